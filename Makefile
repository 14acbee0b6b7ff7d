# Two commands do all the set-up: `make demo` and `make test`. Everything else is optional.
.PHONY: demo test test-world lint fmt build bench clean-test-world image

# Build what is missing, then run a local IPFS Cluster under supervision (the embedded default).
demo:
	scripts/demo.sh

# Build what is missing (test world, crates), then run every test in a loopback-only namespace.
test:
	scripts/run-tests.sh

# Only build the test world (etcd, Kubernetes, kubelet, kwok, CoreDNS, Kubo, IPFS Cluster, helm,
# the real node's images) into the cache.
test-world:
	scripts/test-world.sh build

# Benchmarks (they print figures) in a loopback-only namespace. dashboard_load needs Debian's
# nginx and wrk (`apt-get install nginx wrk`); controller_scale runs 10 and 100 IpfsClusters
# (`IPFS_KIT_BENCH_SIZES=1000 scripts/run-bench.sh --bench controller_scale` for 1000).
bench:
	scripts/run-bench.sh --bench probe_fanout --bench dashboard_load --bench controller_scale

# Formatting and lints as CI checks them.
lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --locked --release

# The operator's container image, without a Docker daemon or a registry (needs Debian's umoci and
# skopeo): a docker archive in target/image/ for `docker load`, `kind load image-archive`,
# `k3d image import` or `ctr images import`. The Dockerfile builds the same image with Docker.
image:
	scripts/image.sh

# Remove the cached test-world binaries (they are rebuilt by the next `make test`).
clean-test-world:
	rm -rf "$${IPFS_KIT_TOOLS:-$${XDG_CACHE_HOME:-$$HOME/.cache}/ipfs-kit-operator/tools}"

# Regenerate crds/ and the chart's copy from the Rust API types (a unit test fails when either is stale).
.PHONY: crds
crds:
	scripts/gen-crds.sh
