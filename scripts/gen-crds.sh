#!/usr/bin/env bash
# Regenerates crds/ from the Rust types: one file per CustomResourceDefinition, named after it
# (crds/<plural>.<group>.yaml), split from the stream `ipfs-kit-operator crd` prints. The same
# files go into the helm chart's crds/ (charts/ipfs-kit-operator/crds/).
# A unit test (api::tests::crds_directory_is_up_to_date) fails when either copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --locked -- crd >"$out/all.yaml"
# Split on document markers; name each document after its metadata.name.
awk -v dir="$out" '
  /^---$/ { n++; next }
  { print > (dir "/doc-" n ".yaml") }
' "$out/all.yaml"
chart_crds=charts/ipfs-kit-operator/crds
mkdir -p crds "$chart_crds"
for doc in "$out"/doc-*.yaml; do
  name=$(awk '/^metadata:/ { m = 1; next } m && /^  name: / { print $2; exit }' "$doc")
  if [[ -z $name ]]; then
    echo "gen-crds: no metadata.name in a document of \`ipfs-kit-operator crd\`" >&2
    exit 1
  fi
  cp "$doc" "crds/$name.yaml"
  cp "$doc" "$chart_crds/$name.yaml"
  echo "crds/$name.yaml $chart_crds/$name.yaml"
done
