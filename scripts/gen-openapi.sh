#!/usr/bin/env bash
# Regenerates src/dashboard/openapi.json from the dashboard's view types (schemars): the unit test
# dashboard::openapi::tests::the_checked_in_document_is_the_generated_one writes the file when
# UPDATE_OPENAPI is set, and fails without it when the file is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

UPDATE_OPENAPI=1 cargo test --quiet --locked --lib -- \
  --exact dashboard::openapi::tests::the_checked_in_document_is_the_generated_one
echo "src/dashboard/openapi.json"
