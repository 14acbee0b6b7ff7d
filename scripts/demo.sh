#!/usr/bin/env bash
# The demo: a local IPFS Cluster of real Kubo + ipfs-cluster-service peers, supervised by
# ipfs-kit-operator on this host, its daemons in a loopback-only network namespace, its dashboard
# on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-world.sh build kubo ipfs-cluster
PATH="$(scripts/test-world.sh bindir kubo ipfs-cluster):$PATH"
export PATH
exec cargo run --locked --quiet -- local up --isolated -f examples/local-cluster.yaml
