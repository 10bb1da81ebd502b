#!/usr/bin/env bash
# The whole test suite, installing what it needs: formatting and lint gates, then every unit,
# property and end-to-end test of the workspace (the S3 tests run against moto_server, which
# this script installs into a Python venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SLUICE_VENV:-$PWD/.venv}"
echo "==> Python test tools in $venv"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
export SLUICE_MOTO_SERVER="$venv/bin/moto_server"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
