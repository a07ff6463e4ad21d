#!/usr/bin/env bash
# The README's demo: run the agent on examples/pods, as root, on this machine.
#
# It builds the example image busybox:1.36 from Debian's busybox-static (no
# registry is needed), imports it offline, copies the examples into a
# root-owned manifest directory and runs the agent in the foreground. Once the
# pods have converged it prints `get pods -A -o wide`. Ctrl-C stops the agent and,
# because the demo passes --stop-pods-on-exit, removes the demo's pods.
#
# The demo has its own roots, bridge, subnet, netns prefix, nftables table,
# cgroup parent and Kubernetes API port (127.0.0.1:16448), so that it
# neither disturbs nor is disturbed by a real agent (or podman, Docker, k3s,
# libvirt, LXD) on the same machine; it ignores /etc/pelagos/config.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=${1:-/tmp/pelagos-demo}
bin=bin/pelagos-agent
mkimage=bin/mkimage
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (the agent makes namespaces, bridges, cgroups and nftables rules)" >&2
	exit 1
fi
for b in "$bin" "$mkimage"; do
	[ -x "$b" ] || { echo "demo: $b is missing: run 'make demo'" >&2; exit 1; }
done

export PELAGOS_CONFIG= # the demo's settings are all below, not the machine's
sock=$demo/agent.sock
roots=(--root "$demo/root" --run-root "$demo/run")
names=(--bridge pelagos-demo0 --subnet 172.16.250.0/24 --netns-prefix pelagos-demo- --nft-table pelagos_demo --cgroup-parent pelagos-demo)
install -d -m 0755 "$demo"

echo "==> building the example image busybox:1.36 from /bin/busybox"
"$mkimage" -o "$demo/busybox.tar" -ref busybox:1.36
"$bin" image import "${roots[@]}" "$demo/busybox.tar"

echo "==> manifests: $demo/pods (copied from examples/pods)"
rm -rf "$demo/pods"
install -d -m 0755 "$demo/pods"
install -m 0644 examples/pods/*.yaml "$demo/pods/"

# Show the pods once they have converged, while the agent runs in the foreground.
(
	for _ in $(seq 1 120); do
		sleep 0.5
		out=$("$bin" get pods -A -o wide --socket "$sock" 2>/dev/null) || continue
		if ! grep -qE 'Pending|ContainerCreating|PodInitializing|Init:' <<<"$out"; then
			break
		fi
	done
	echo
	"$bin" get pods -A -o wide --socket "$sock" || true
	echo
	echo "The demo is up. Try, in another terminal:"
	echo "  export PELAGOS_SOCKET=$sock"
	echo "  $bin describe pod web"
	echo "  $bin logs web"
	echo "  curl http://127.0.0.1:8080/"
	echo "  $bin kubeconfig > $demo/kubeconfig; KUBECONFIG=$demo/kubeconfig kubectl get pods -A"
	echo "Ctrl-C stops the agent and removes the demo pods."
) &
waiter=$!
trap 'kill "$waiter" 2>/dev/null || true' EXIT

echo "==> starting the agent (Ctrl-C to stop)"
"$bin" run "${roots[@]}" "${names[@]}" --socket "$sock" --api-listen 127.0.0.1:16448 --log-format console \
	--manifests "$demo/pods" --stop-pods-on-exit
