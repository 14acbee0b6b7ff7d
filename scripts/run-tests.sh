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
  for c in /sys/fs/cgroup/*/"$IPFS_KIT_NODE_CGROUP"; do
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
  # Everything. First two lanes side by side in the same namespace: the binaries on the real
  # node (tests/real*: pods, mostly waiting on kubelet and on the operator's probe intervals) and
  # the unit tests and local binaries (mostly waiting on daemons); the cores are idle most of the
  # time in either lane. Then, alone, the binaries of the loopback control plane (tests/k8s*),
  # whose API server and real daemons would compete with the real node's for the cores. The real
  # node's lane is printed when it ends.
  real=() rest=(--lib --bins) after=()
  for main in tests/*/main.rs; do
    name=$(basename "$(dirname "$main")")
    case $name in
      support) ;;
      real*) real+=(--test "$name") ;;
      k8s*) after+=(--test "$name") ;;
      *) rest+=(--test "$name") ;;
    esac
  done
  real_out=$(mktemp)
  trap 'rm -f "$out" "$real_out"; remove_node_cgroups' EXIT
  # shellcheck disable=SC2016
  "${isolate[@]}" -- bash -c '
    ip link set lo up
    real_out=$1 && shift
    split=0
    for a in "$@"; do [[ $a == -- ]] && break; split=$((split + 1)); done
    second=$split
    for ((i = split + 1; i <= $#; i++)); do [[ ${!i} == -- ]] && second=$i; done
    real_status=0
    if ((split > 0)); then cargo test --locked --offline "${@:1:split}" >"$real_out" 2>&1 & fi
    real=$!
    cargo test --locked --offline "${@:split+2:second-split-2}" 2>&1; rest_status=$?
    if ((split > 0)); then
      wait $real; real_status=$?
      echo "[test] the real node lane:"; cat "$real_out"
    fi
    after_status=0
    if (($# > second)); then cargo test --locked --offline "${@:second+1}" 2>&1; after_status=$?; fi
    exit $((rest_status | real_status | after_status))
  ' _ "$real_out" "${real[@]}" -- "${rest[@]}" -- "${after[@]}" | tee "$out" || status=$?
fi
# One summary line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i;
       if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$out"
echo "[test] finished in $(($(date +%s) - start)) s (exit $status)" >&2
exit $status
