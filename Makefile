# pelagos-agent — `make help` lists the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 0

BIN      := bin/pelagos-agent
GOARCH   ?= $(shell go env GOARCH)
HELPERS  := runtime/linux/helperbin/bin/$(GOARCH)
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZEXECS ?= 20000x
BENCHTIME ?= 5x
FUZZEXECS_SLOW ?= 300x
DEMO_DIR ?= /tmp/pelagos-demo

.PHONY: help
help: ## show the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what builds and tests need on Debian (as root): busybox-static, Go modules
	@if ! dpkg -s busybox-static >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static; fi
	go mod download

.PHONY: helpers
# The helpers are embedded in the agent (runtime/linux/helperbin), which
# checks them against SHA256SUMS. The pause never starts the Go runtime:
# its entry point is its own assembly (see cmd/pelagos-pause).
helpers: ## build the helper binaries the agent embeds (pelagos-helper, pelagos-pause) for GOARCH
	@mkdir -p $(HELPERS)
	GOARCH=$(GOARCH) go build -trimpath -ldflags '-s -w' -o $(HELPERS)/pelagos-helper ./cmd/pelagos-helper
	GOARCH=$(GOARCH) go build -trimpath -ldflags '-s -w -E main.entry' -o $(HELPERS)/pelagos-pause ./cmd/pelagos-pause
	cd $(HELPERS) && sha256sum pelagos-helper pelagos-pause > SHA256SUMS

.PHONY: build
build: helpers ## build the static binary into bin/
	go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pelagos-agent

.PHONY: vet
vet: helpers ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...

.PHONY: test
test: deps helpers vet ## every test tier (unit, root, end to end) with -race, then short fuzzing; run as root
	CGO_ENABLED=1 go test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

.PHONY: fuzz
# Fuzzing is bounded by execution count, not time: a duration-bounded run can
# fail spuriously with "context deadline exceeded" on Go 1.26 (go.dev/issue/75804).
# Targets whose inputs are slow (each FuzzUnpack input unpacks a layer to disk)
# get a smaller count.
fuzz: ## run each native fuzz target for FUZZEXECS executions
	@set -e; grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sort -u | while IFS=: read -r file fn; do \
		f=$${fn#func }; pkg=./$$(dirname $${file#./}); \
		case $$f in FuzzUnpack) n=$(FUZZEXECS_SLOW);; *) n=$(FUZZEXECS);; esac; \
		echo "fuzz $$pkg $$f ($$n)"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $$n $$pkg; \
	done

.PHONY: bench
bench: helpers ## run every benchmark BENCHTIME times (as root); docs/benchmarks.md gives per-benchmark commands
	go test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

.PHONY: demo
demo: deps build ## run the agent on examples/pods (as root), importing the example image offline
	./examples/demo.sh $(DEMO_DIR)

.PHONY: clean
clean: ## remove build output
	rm -rf bin
	rm -f runtime/linux/helperbin/bin/*/pelagos-* runtime/linux/helperbin/bin/*/SHA256SUMS

.PHONY: critest
critest: helpers ## run the CRI conformance suite (critest v1.37.0, built through the module proxy) against `pelagos-agent cri`, as root (about a minute)
	CI=true CGO_ENABLED=1 go test -tags critest -count=1 -run TestCritest -v -timeout 60m ./cmd/pelagos-agent
