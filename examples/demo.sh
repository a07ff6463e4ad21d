#!/usr/bin/env bash
# The README's demo: run the agent on examples/pods, as root, on this machine.
#
# It builds the example image busybox:1.36 from Debian's busybox-static (no
# registry is needed), imports it offline, copies the examples into a
# root-owned manifest directory and runs the agent in the foreground. Once the
# pods have converged it prints `get pods -A -o wide`. Ctrl-C stops the agent and,
# because the demo passes --stop-pods-on-exit, removes the demo's pods.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=${1:-/tmp/pelagos-demo}
bin=bin/pelagos-agent
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (the agent makes namespaces, bridges, cgroups and nftables rules)" >&2
	exit 1
fi
[ -x "$bin" ] || { echo "demo: $bin is missing: run 'make build' first" >&2; exit 1; }

install -d -m 0755 "$demo"
global=(--root "$demo/root" --run-root "$demo/run" --socket "$demo/agent.sock")

echo "==> building the example image busybox:1.36 from /bin/busybox"
go run ./runtime/image/imagetest/mkimage -o "$demo/busybox.tar" -ref busybox:1.36
"$bin" "${global[@]}" image import "$demo/busybox.tar"

echo "==> manifests: $demo/pods (copied from examples/pods)"
rm -rf "$demo/pods"
install -d -m 0755 "$demo/pods"
install -m 0644 examples/pods/*.yaml "$demo/pods/"

# Show the pods once they have converged, while the agent runs in the foreground.
(
	for _ in $(seq 1 60); do
		sleep 0.5
		out=$("$bin" "${global[@]}" get pods -A -o wide 2>/dev/null) || continue
		if ! grep -qE 'Pending|ContainerCreating|PodInitializing|Init:' <<<"$out"; then
			break
		fi
	done
	echo
	"$bin" "${global[@]}" get pods -A -o wide || true
	echo
	echo "The agent is running. Try, in another terminal:"
	echo "  $bin --socket $demo/agent.sock describe pod web"
	echo "  $bin --socket $demo/agent.sock logs web"
	echo "  curl http://127.0.0.1:8080/"
	echo "Ctrl-C stops the agent and removes the demo pods."
) &
waiter=$!
trap 'kill "$waiter" 2>/dev/null || true' EXIT

echo "==> starting the agent (Ctrl-C to stop)"
"$bin" "${global[@]}" --log-format console run --manifests "$demo/pods" --stop-pods-on-exit
