#!/usr/bin/env bash
# Builds the container images the test world's real node runs, without a registry: a pause image
# and look-alikes of the official ipfs/kubo and ipfs/ipfs-cluster images made of the test world's
# own binaries, Debian's busybox-static, tini and gosu, and the official entrypoint scripts taken
# from the modules' own sources. Each is written as a docker archive tagged with the official name,
# so that pods naming `ipfs/kubo:v0.42.0` run them unchanged (imagePullPolicy IfNotPresent). Each
# Kubo and IPFS Cluster image also comes as a variant that runs as the non-root user 1000:100
# (`localhost/ipfs-kit-test/...`).
#
#   scripts/node-images.sh OUTDIR     (called by `scripts/test-world.sh build node-images`)
#
# Needs: gcc (static libc), umoci, skopeo, busybox-static, tini, gosu (Debian packages).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/oci.sh
. "$here/oci.sh"

out=${1:?usage: node-images.sh OUTDIR}
eval "$("$here/test-world.sh" env kubo ipfs-cluster)"
kubo_version=$("$here/test-world.sh" version kubo)
cluster_version=$("$here/test-world.sh" version ipfs-cluster)
oci_need gcc busybox tini-static gosu
PAUSE_REF=registry.k8s.io/pause:3.10

module_dir() { # the module's source from the Go module cache (downloaded by the binaries' build)
  GOFLAGS=-mod=mod go mod download -json "$1@$2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/ipfs-kit-node-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/oci
mkdir -p "$out"

# Like the official images, ours start as root and drop to `ipfs` in their entrypoint. Pods that
# leave runAsUser to the platform (`spec.podSecurityContext.omitIds`) with `runAsNonRoot` need an
# image whose own user is a numeric non-root one: the same image with USER 1000:100 (ipfs:users),
# under a local name.
NONROOT_PREFIX=localhost/ipfs-kit-test
# nonroot_variant NAME REFERENCE FILE: image NAME of the layout with USER 1000:100, archived.
nonroot_variant() {
  skopeo --insecure-policy copy -q "oci:$layout:$1" "oci:$layout:$1-nonroot"
  oci_config "$layout" "$1-nonroot" --config.user 1000:100
  oci_archive "$layout" "$1-nonroot" "$2" "$3"
}

# pause: the sandbox process (scripts/node/pause.c), static, nothing else in the image.
gcc -Os -static -o "$work/pause" "$here/node/pause.c"
strip "$work/pause"
r=$(oci_new "$layout" pause)
cp "$work/pause" "$r/pause"
oci_commit "$layout" pause
oci_config "$layout" pause --config.entrypoint /pause --config.user 65535:65535
oci_archive "$layout" pause "$PAUSE_REF" "$out/pause.tar"

# ipfs/kubo: as kubo's Dockerfile lays it out (busybox base; tini and gosu in /sbin; ipfs,
# start_ipfs and container_init_run in /usr/local/bin; /data/ipfs, /ipfs, /ipns, /mfs and
# /container-init.d owned by ipfs:users; root at start, start_ipfs drops to ipfs with gosu).
# Not included: fusermount (`ipfs mount` only).
src=$(module_dir github.com/ipfs/kubo "$kubo_version")
r=$(oci_new "$layout" kubo)
busybox_rootfs "$r" /data/ipfs
cp "$(command -v tini-static)" "$r/sbin/tini"
cp "$(command -v gosu)" "$r/sbin/gosu"
cp "$IPFS_KIT_BIN_KUBO/ipfs" "$r/usr/local/bin/ipfs"
install -m 0755 "$src/bin/container_daemon" "$r/usr/local/bin/start_ipfs"
install -m 0755 "$src/bin/container_init_run" "$r/usr/local/bin/container_init_run"
mkdir -p "$r/data/ipfs" "$r/ipfs" "$r/ipns" "$r/mfs" "$r/container-init.d"
chown 1000:100 "$r/data/ipfs" "$r/ipfs" "$r/ipns" "$r/mfs" "$r/container-init.d"
oci_commit "$layout" kubo
oci_config "$layout" kubo \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SRC_DIR=/kubo --config.env IPFS_PATH=/data/ipfs --config.env GOLOG_LOG_LEVEL= \
  --config.exposedports 4001/tcp --config.exposedports 4001/udp --config.exposedports 5001/tcp \
  --config.exposedports 8080/tcp --config.exposedports 8081/tcp --config.volume /data/ipfs \
  --config.entrypoint /sbin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/start_ipfs \
  --config.cmd daemon --config.cmd --migrate=true --config.cmd --agent-version-suffix=docker \
  --config.label "org.opencontainers.image.version=$kubo_version" \
  --config.label "org.opencontainers.image.description=Kubo built by the ipfs-kit-operator test world"
oci_archive "$layout" kubo "docker.io/ipfs/kubo:$kubo_version" "$out/kubo.tar"
nonroot_variant kubo "$NONROOT_PREFIX/kubo:$kubo_version" "$out/kubo-nonroot.tar"

# ipfs/ipfs-cluster: as ipfs-cluster's Dockerfile lays it out (tini and su-exec in /sbin, the
# binaries and entrypoint.sh in /usr/local/bin, /data/ipfs-cluster owned by ipfs:users; root at
# start, entrypoint.sh drops to ipfs with su-exec). Debian has no su-exec: gosu takes the same
# arguments (`su-exec USER COMMAND...`). Not included: ipfs-cluster-follow.
src=$(module_dir github.com/ipfs-cluster/ipfs-cluster "$cluster_version")
r=$(oci_new "$layout" cluster)
busybox_rootfs "$r" /data/ipfs-cluster
cp "$(command -v tini-static)" "$r/sbin/tini"
cp "$(command -v gosu)" "$r/sbin/su-exec"
cp "$IPFS_KIT_BIN_IPFS_CLUSTER/ipfs-cluster-service" "$IPFS_KIT_BIN_IPFS_CLUSTER/ipfs-cluster-ctl" \
  "$r/usr/local/bin/"
install -m 0755 "$src/docker/entrypoint.sh" "$r/usr/local/bin/entrypoint.sh"
mkdir -p "$r/data/ipfs-cluster"
chown 1000:100 "$r/data/ipfs-cluster"
oci_commit "$layout" cluster
oci_config "$layout" cluster \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env GOPATH=/go --config.env SRC_PATH=/go/src/github.com/ipfs-cluster/ipfs-cluster \
  --config.env IPFS_CLUSTER_PATH=/data/ipfs-cluster --config.env IPFS_CLUSTER_CONSENSUS=crdt \
  --config.exposedports 9094/tcp --config.exposedports 9095/tcp --config.exposedports 9096/tcp \
  --config.volume /data/ipfs-cluster \
  --config.entrypoint /sbin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/entrypoint.sh \
  --config.cmd daemon \
  --config.label "org.opencontainers.image.version=$cluster_version" \
  --config.label "org.opencontainers.image.description=IPFS Cluster built by the ipfs-kit-operator test world"
oci_archive "$layout" cluster "docker.io/ipfs/ipfs-cluster:$cluster_version" "$out/ipfs-cluster.tar"
nonroot_variant cluster "$NONROOT_PREFIX/ipfs-cluster:$cluster_version" "$out/ipfs-cluster-nonroot.tar"

printf '%s\n' "$PAUSE_REF" >"$out/pause.ref"
ls -l "$out"/*.tar >&2
