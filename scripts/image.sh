#!/usr/bin/env bash
# Builds the operator's container image without a Docker daemon and without a registry, the same
# image the Dockerfile describes (the binary in /usr/local/bin, user 65532, no shell, OCI labels),
# and writes it as a docker archive that `docker load`, `kind load image-archive`, `k3d image
# import`, `ctr images import` and `podman load` accept.
#
#   scripts/image.sh [--profile release|dev] [--binary PATH] [--tag REF] [--out FILE] [--oci FILE]
#
#   --profile  cargo profile of the binary (default release; the tests use dev, already built)
#   --binary   package this binary instead of building one
#   --tag      image reference (default ghcr.io/ipfs-kit/ipfs-kit-operator:<crate version>, the
#              default of the chart and of deploy/)
#   --out      docker archive to write (default <cargo target dir>/image/ipfs-kit-operator.tar)
#   --oci      also write an OCI archive (`skopeo copy oci-archive:FILE docker://...` pushes it)
#
# The binary is linked statically when the musl target is installed (`rustup target add
# x86_64-unknown-linux-musl`); otherwise it is the glibc build and the shared libraries it needs
# (ldd) are copied into the image at the same paths, as distroless' cc image has them.
# Needs umoci and skopeo (Debian: apt-get install umoci skopeo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/oci.sh
. scripts/oci.sh

profile=release binary="" tag="" out="" oci=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --oci) oci=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
oci_need ldd sha256sum

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
tag=${tag:-ghcr.io/ipfs-kit/ipfs-kit-operator:$version}
target_dir=${CARGO_TARGET_DIR:-target}
out=${out:-$target_dir/image/ipfs-kit-operator.tar}

if [[ -z $binary ]]; then
  flags=(--locked --bin ipfs-kit-operator)
  [[ $profile == dev ]] || flags+=(--profile "$profile")
  dir=$profile
  [[ $profile == dev ]] && dir=debug
  musl=x86_64-unknown-linux-musl
  if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
    flags+=(--target "$musl")
    dir=$musl/$dir
  fi
  echo "[image] cargo build ${flags[*]}" >&2
  cargo build --quiet "${flags[@]}"
  binary=$target_dir/$dir/ipfs-kit-operator
fi
[[ -x $binary ]] || { echo "no executable at $binary" >&2; exit 1; }

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Rebuild only when the binary, this recipe or the reference changed.
key=$(cat "$binary" scripts/image.sh scripts/oci.sh <(echo "$tag $revision") | sha256sum | cut -c1-64)
if [[ -f $out && -f $out.key && $(cat "$out.key") == "$key" ]]; then
  echo "[image] $tag: up to date in $out" >&2
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ipfs-kit-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/oci
r=$(oci_new "$layout" operator)
mkdir -p "$r/usr/local/bin" "$r/etc" "$r/tmp" "$r/home/nonroot"
chmod 1777 "$r/tmp"
install -m 0755 "$binary" "$r/usr/local/bin/ipfs-kit-operator"
# Shared libraries (none for a static binary): each at the path the dynamic loader looks for it.
while read -r lib; do
  mkdir -p "$r$(dirname "$lib")"
  cp -L "$lib" "$r$lib"
done < <(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
cat >"$r/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$r/etc/group"
printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  mkdir -p "$r/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
fi
[[ $(id -u) -ne 0 ]] || chown 65532:65532 "$r/home/nonroot"
oci_commit "$layout" operator
oci_config "$layout" operator \
  --config.user 65532:65532 --config.workingdir /home/nonroot \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.entrypoint /usr/local/bin/ipfs-kit-operator --config.cmd run \
  --config.label org.opencontainers.image.title=ipfs-kit-operator \
  --config.label "org.opencontainers.image.description=Runs IPFS Kubo and IPFS Cluster peers from a declared state" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$(dirname "$out")"
oci_archive "$layout" operator "$tag" "$out"
if [[ -n $oci ]]; then
  rm -f "$oci"
  skopeo --insecure-policy copy -q "oci:$layout:operator" "oci-archive:$oci:$tag"
fi
echo "$key" >"$out.key"
echo "$tag" >"$out.ref"
echo "[image] $tag -> $out ($(du -h "$out" | cut -f1))" >&2
