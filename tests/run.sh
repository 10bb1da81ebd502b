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
# Real clients (Confluent's Python client) run from this venv.
export SLUICE_VENV="$venv"

# The guest components (components/, its own workspace) are built for wasm32-wasip2.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "==> rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# The lint gates need rustfmt and clippy, which ship with this project's machines; say so
# rather than fail where a toolchain lacks them (they cannot be fetched offline).
if cargo fmt --version >/dev/null 2>&1; then
  echo "==> cargo fmt --check"
  cargo fmt --all -- --check
  cargo fmt --all --manifest-path components/Cargo.toml -- --check
else
  echo "==> rustfmt is not installed: formatting gate skipped"
fi
if cargo clippy --version >/dev/null 2>&1; then
  echo "==> cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  cargo clippy --manifest-path components/Cargo.toml --all-targets --locked -- -D warnings
  cargo clippy --manifest-path components/Cargo.toml --target wasm32-wasip2 --locked -- -D warnings
else
  echo "==> clippy is not installed: lint gate skipped"
fi
echo "==> cargo test (guest components, natively)"
cargo test --manifest-path components/Cargo.toml --locked
echo "==> cargo test"
cargo test --workspace --locked
