# Helpers to build container images without a daemon or a registry (sourced by scripts/image.sh
# and scripts/node-images.sh): Debian's umoci writes an OCI image layout, skopeo turns one image of
# it into a docker archive (`docker save` format), which `docker load`, `kind load image-archive`,
# `k3d image import`, `ctr images import` and `podman load` all accept.

oci_need() {
  local missing=() t
  for t in umoci skopeo "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "missing: ${missing[*]} (Debian: apt-get install umoci skopeo)" >&2
    return 1
  fi
}

# umoci needs --rootless when not run as root (files are then owned by the caller in the image).
oci_rootless() { [[ $(id -u) -eq 0 ]] || echo --rootless; }

# oci_new LAYOUT NAME: a new empty image NAME in LAYOUT, unpacked; prints its rootfs directory.
oci_new() {
  local layout=$1 name=$2
  [[ -d $layout ]] || umoci init --layout "$layout"
  umoci new --image "$layout:$name"
  rm -rf "$layout.bundle-$name"
  # shellcheck disable=SC2046
  umoci unpack $(oci_rootless) --image "$layout:$name" "$layout.bundle-$name" >/dev/null
  echo "$layout.bundle-$name/rootfs"
}

# oci_commit LAYOUT NAME: one layer of everything in the rootfs of oci_new.
oci_commit() {
  local layout=$1 name=$2
  # shellcheck disable=SC2046
  umoci repack $(oci_rootless) --image "$layout:$name" "$layout.bundle-$name"
  rm -rf "$layout.bundle-$name"
}

# oci_config LAYOUT NAME umoci-config-flags...
oci_config() {
  local layout=$1 name=$2
  shift 2
  # shellcheck disable=SC2046
  umoci config $(oci_rootless) --no-history --image "$layout:$name" "$@"
}

# oci_archive LAYOUT NAME REFERENCE FILE: a docker archive of the image, tagged REFERENCE.
oci_archive() {
  local layout=$1 name=$2 ref=$3 file=$4
  rm -f "$file"
  skopeo --insecure-policy copy -q "oci:$layout:$name" "docker-archive:$file:$ref"
}

# busybox_rootfs DIR: a static busybox with every applet linked in /bin, /etc/passwd and
# /etc/group with root, nobody and (as `adduser -D -u 1000 -G users ipfs` makes it in the official
# IPFS images) ipfs:users = 1000:100 with home HOME (default /data/ipfs).
busybox_rootfs() {
  local r=$1 home=${2:-/data/ipfs} bb a
  bb=$(command -v busybox)
  # ldd fails on a static binary ("not a dynamic executable").
  ! ldd "$bb" >/dev/null 2>&1 || {
    echo "$bb is not statically linked (Debian: apt-get install busybox-static)" >&2
    return 1
  }
  mkdir -p "$r/bin" "$r/sbin" "$r/etc" "$r/root" "$r/tmp" "$r/var/tmp" "$r/home" "$r/proc" \
    "$r/sys" "$r/dev" "$r/usr/bin" "$r/usr/sbin" "$r/usr/local/bin"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 0700 "$r/root"
  cp "$bb" "$r/bin/busybox"
  for a in $("$bb" --list); do
    [[ -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
  done
  cat >"$r/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
ipfs:x:1000:100:Linux User,,,:$home:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
  printf 'root:x:0:\nusers:x:100:ipfs\nnogroup:x:65534:\n' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$r/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
  fi
}
