#!/usr/bin/env bash
# Runs every test. First builds everything that needs the package registries (the test world from
# the Go module proxy, the crates from crates.io), then runs the test binaries inside a network
# namespace with only loopback up, and a PID namespace, so that no test or daemon can send traffic
# past 127.0.0.0/8 and nothing outlives the run.
#
#   scripts/run-tests.sh [cargo test arguments...]     e.g. scripts/run-tests.sh --test daemons
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
scripts/test-world.sh build
echo "[test] building test binaries (cargo)..." >&2
cargo test --locked --no-run --quiet
eval "$(scripts/test-world.sh env)"

isolate=(unshare --net --pid --fork --mount-proc)
if [[ $(id -u) -ne 0 ]]; then
  # Without root, an unprivileged user namespace provides the same isolation where allowed.
  isolate=(unshare --user --map-root-user --net --pid --fork --mount-proc)
fi
if ! "${isolate[@]}" true 2>/dev/null; then
  echo "[test] cannot create a network namespace (${isolate[*]}): run as root, or enable" \
    "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)." >&2
  exit 1
fi

echo "[test] running tests in a loopback-only network namespace..." >&2
out=$(mktemp)
# The real node's pods live in cgroups under this name (tests/support/real_node.rs); whatever a
# killed test process could not remove is removed after the run (the PID namespace has ended
# every process by then).
export IPFS_KIT_NODE_CGROUP=ipfs-kit-node-$$-$RANDOM
remove_node_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/"$IPFS_KIT_NODE_CGROUP"*; do
    [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}
trap 'rm -f "$out"; remove_node_cgroups' EXIT
status=0
if [[ $# -gt 0 ]]; then
  "${isolate[@]}" -- bash -c 'ip link set lo up && exec cargo test --locked --offline "$@" 2>&1' _ "$@" |
    tee "$out" || status=$?
else
  # Everything, in lanes that run side by side, each in a namespace of its own (its own loopback,
  # ports, real node and cgroup name), then, without them, the binaries of the loopback control
  # plane (tests/k8s*), whose API server and real daemons would compete with the lanes for the
  # cores (the API server outage of tests/k8s_outage, run beside the lanes, once left
  # kube-controller-manager's caches stale for minutes after the API server came back); those
  # binaries run side by side, each with a control plane of its own, and their tests mostly
  # wait on it: four at a time.
  # Most lanes mostly wait (on kubelet, on daemons, on the operator's probe intervals): the cores
  # are idle most of the time in any one of them. A lane's output is printed when it ends.
  #   pods:   the real node (tests/real*), the scenario and the install tests;
  #   starts: the real node again, the real-pod tests that need a cluster of their own;
  #   rest:   unit tests, binaries and the local binaries, but for a part of the local tests;
  #   local:  that part (the local tests run one at a time: they share the preferred ports, so a
  #           namespace apart is a second line of them; the two take about as long).
  starts_tests=(five_peers_started_together exposed_peers_are_reached a_private_network_cluster
    pods_that_cannot_run peers_without_swarm_connections a_hung_peer_is_judged
    a_steady_cluster_is_probed)
  local_tests=(local::split:: local::parity:: local::prometheus:: local::requests:: local::history::)
  real=() rest=(--lib --bins) after=()
  for main in tests/*/main.rs; do
    name=$(basename "$(dirname "$main")")
    case $name in
      support) ;;
      realpods) ;;
      real*) real+=(--test "$name") ;;
      k8s*) after+=("$name") ;;
      daemons) ;;
      *) rest+=(--test "$name") ;;
    esac
  done
  skip() { local t; for t in "$@"; do printf -- '--skip\n%s\n' "$t"; done; }
  mapfile -t skip_starts < <(skip "${starts_tests[@]}")
  mapfile -t skip_local < <(skip "${local_tests[@]}")
  lane() { # name, cgroup suffix, cargo test arguments...
    local name=$1 cgroup=$2
    shift 2
    IPFS_KIT_NODE_CGROUP=$IPFS_KIT_NODE_CGROUP$cgroup "${isolate[@]}" -- bash -c \
      'ip link set lo up && exec cargo test --locked --offline "$@" 2>&1' _ "$@" \
      >"$lanes/$name" 2>&1
  }
  lanes=$(mktemp -d)
  trap 'rm -rf "$out" "$lanes"; remove_node_cgroups' EXIT
  run() { lane "$@" & pids+=($!) names+=("$1"); }
  # Waits for the lanes started, printing each one's output in turn.
  finish() {
    local i lane_status
    for i in "${!pids[@]}"; do
      lane_status=0
      wait "${pids[$i]}" || lane_status=$?
      status=$((status | lane_status))
      { echo "[test] lane ${names[$i]} (exit $lane_status):"; cat "$lanes/${names[$i]}"; } |
        tee -a "$out"
    done
    pids=() names=()
  }
  pids=() names=()
  # `cargo test` runs one binary after the other: the real node binaries of a lane in turn.
  run pods "" "${real[@]}" --test realpods -- "${skip_starts[@]}"
  run starts -2 --test realpods -- "${starts_tests[@]}"
  run rest -3 "${rest[@]}" --test daemons -- "${skip_local[@]}"
  run local -4 --test daemons -- "${local_tests[@]}"
  finish
  for name in "${after[@]}"; do
    run "$name" "-$name" --test "$name" -- --test-threads=4
  done
  finish
fi
# Each failure's message again at the end (where a cut log keeps it), without its backtrace.
if grep -q "panicked at" "$out"; then
  echo "[test] the failures' messages:"
  awk '/^thread .* panicked at / { n = 12 } /^stack backtrace:/ { n = 0 }
       n > 0 { print "  " substr($0, 1, 400); n-- }' "$out"
fi
# One summary line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i;
       if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$out"
echo "[test] finished in $(($(date +%s) - start)) s (exit $status)" >&2
exit $status
