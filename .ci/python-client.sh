#!/usr/bin/env bash
# Python client: install clients/python into a fresh venv (the build step generates its
# protobuf/gRPC modules from proto/), lint it, and run its tests against the release server
# started in dev mode. The server binary comes from ADMISSION_SERVER_BIN, or is built here.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ -z "${ADMISSION_SERVER_BIN:-}" ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
  cargo build --release --locked -p admission-server
  ADMISSION_SERVER_BIN="$CARGO_TARGET_DIR/release/admission-server"
fi
export ADMISSION_SERVER_BIN

venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
# A regular (non-editable) install, so the tests import what a user would get.
"$venv/bin/python" -m pip install --quiet "./clients/python[test,lint]"

cd clients/python
"$venv/bin/ruff" format --check .
"$venv/bin/ruff" check .
# Type-checks the installed package (with its generated .pyi files) and the tests.
"$venv/bin/mypy" -p byteor_admission
"$venv/bin/mypy" tests
"$venv/bin/python" -m pytest
