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
TESTLOGS ?= /tmp/pelagos-test-logs
# Builds with -v print each package they compile: shown as a count, on one
# line on a terminal, so that a first build shows progress (errors are
# printed as they are).
PROGRESS = 2>&1 | awk -v tty=$$([ -t 1 ] && echo 1) '/^[^ :\#]+$$/ { n++; if (tty) { printf "\r    %d packages compiled", n; fflush() }; next } \
	{ print } END { if (n) printf "%s    %d packages compiled\n", (tty ? "\r" : ""), n }'
# `make package`: nfpm is run at a pinned version from the Go module proxy.
NFPM_VERSION ?= v2.48.0
PKG_DIR ?= dist
GOARCH ?= $(shell go env GOARCH)
# A Debian version from the last v* tag: v1.2.3-4-gabc -> 1.2.3+4+gabc;
# without a tag, 0.0.0+git<commit>.
DEB_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null | sed 's/^v//; s/-/+/g' | grep . || \
	echo "0.0.0+git$$(git describe --always --dirty 2>/dev/null | tr - +)")
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

.PHONY: help
help: ## show the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what builds and tests need on Debian (as root): busybox-static, systemd-analyze, CNI plugins, Go modules
	@missing=; dpkg -s busybox-static >/dev/null 2>&1 || missing="$$missing busybox-static"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	dpkg -s containernetworking-plugins >/dev/null 2>&1 || missing="$$missing containernetworking-plugins"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
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
	@echo "==> building $(BIN)"
	@set -o pipefail; go build -v -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pelagos-agent $(PROGRESS)

.PHONY: vet
vet: helpers ## gofmt check and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...

.PHONY: test
test: deps helpers vet ## every test tier (unit, root, end to end with -race; CRI conformance beside them), then short fuzzing; run as root
	@# Two tiers side by side: the CRI conformance suite (critest, about a
	@# minute of mostly waiting) runs while go test works through the
	@# packages; either failing fails the run, and its log is printed.
	@mkdir -p $(TESTLOGS); \
	$(MAKE) --no-print-directory critest > $(TESTLOGS)/critest.log 2>&1 & crit=$$!; \
	CGO_ENABLED=1 go test -race -count=1 -timeout 30m ./...; rc=$$?; \
	wait $$crit; crc=$$?; \
	echo "==> critest tier (exit $$crc):"; tail -n 40 $(TESTLOGS)/critest.log; \
	[ $$rc -eq 0 ] && [ $$crc -eq 0 ]
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

.PHONY: bench-podman
# BenchmarkSideBySide (docs/benchmarks.md): the built agent against podman
# kube play/down and the kernel's floor, interleaved in one run. BEFORE=path
# adds a second agent binary (older code) to every round.
BENCH_ROUNDS ?= 20,5,3,3
BENCH_IDLE ?= 60s
BENCH_CHURN ?= 1000
bench-podman: build ## side by side with podman (as root): 1, 10, 50 and 110 pods, memory, idle RSS and CPU, churn; prints a Markdown report
	PELAGOS_BENCH_AGENT=$(CURDIR)/$(BIN) PELAGOS_BENCH_BEFORE=$(BEFORE) PELAGOS_BENCH_ROUNDS=$(BENCH_ROUNDS) \
		PELAGOS_BENCH_IDLE=$(BENCH_IDLE) PELAGOS_BENCH_CHURN=$(BENCH_CHURN) \
		go test -run '^$$' -bench '^BenchmarkSideBySide$$' -benchtime 1x -timeout 90m ./cmd/pelagos-agent

.PHONY: demo
demo: deps build ## run the agent on examples/pods (as root), importing the example image offline
	@echo "==> building the example image builder bin/mkimage"
	@set -o pipefail; go build -v -trimpath -o bin/mkimage ./runtime/image/imagetest/mkimage $(PROGRESS)
	./examples/demo.sh $(DEMO_DIR)

.PHONY: package
package: build ## build the .deb into PKG_DIR (dist/): binary, systemd unit, settings file, man pages, completions
	rm -rf $(PKG_DIR)/stage && mkdir -p $(PKG_DIR)/stage
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN) gen-docs $(PKG_DIR)/stage
	gzip -9n $(PKG_DIR)/stage/man/man1/*.1
	VERSION='$(DEB_VERSION)' ARCH=$(GOARCH) BIN=$(BIN) STAGE=$(PKG_DIR)/stage SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
		go run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package --config cmd/pelagos-agent/packaging/nfpm.yaml --packager deb --target $(PKG_DIR)/
	rm -rf $(PKG_DIR)/stage

.PHONY: clean
clean: ## remove build output
	rm -rf bin dist
	rm -f runtime/linux/helperbin/bin/*/pelagos-* runtime/linux/helperbin/bin/*/SHA256SUMS

.PHONY: critest
critest: helpers ## run the CRI conformance suite (critest v1.37.0, built through the module proxy) against `pelagos-agent cri`, as root (about a minute)
	CI=true CGO_ENABLED=1 go test -tags critest -count=1 -run TestCritest -v -timeout 60m ./cmd/pelagos-agent
