#!/usr/bin/env bash
# Transparency log: an independent verifier (tests/transparency/verify_fixtures.py, written from
# RFC 6962/9162, C2SP signed-note and DSSE, with PyPI securesystemslib for DSSE) checks a
# receipt, signed checkpoints, inclusion proofs and a consistency proof made by the
# admission-log crate, and that tampered copies are rejected. Then (verify_live.py) the same
# code checks the real release server in dev mode: admissions made with the Python client
# (clients/python), their receipts, inclusion and consistency proofs and the signed checkpoints,
# with the key dev mode writes to log.pub. Installs what it needs into a fresh venv; run from
# anywhere. The server binary comes from ADMISSION_SERVER_BIN, or is built here.
#
# Environment:
#   SECURESYSTEMSLIB_VERSION  securesystemslib release to install (default below)
#   RUFF_VERSION              ruff release linting the verifier (default below)
set -euo pipefail

cd "$(dirname "$0")/.."

SECURESYSTEMSLIB_VERSION="${SECURESYSTEMSLIB_VERSION:-1.3.1}"
RUFF_VERSION="${RUFF_VERSION:-0.17.6}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

printf '\n== installing securesystemslib %s and ruff %s\n' "$SECURESYSTEMSLIB_VERSION" "$RUFF_VERSION"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "securesystemslib[crypto]==${SECURESYSTEMSLIB_VERSION}" "ruff==${RUFF_VERSION}" \
  ./clients/python
# The same rules as clients/python.
ruff="$work/venv/bin/ruff"
"$ruff" format --check --line-length 100 tests/transparency
"$ruff" check --line-length 100 --target-version py310 --select E,F,I,UP,B,SIM,RUF \
  tests/transparency

printf '\n== writing a log'"'"'s artefacts\n'
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
if [[ -z "${ADMISSION_SERVER_BIN:-}" ]]; then
  cargo build --release --locked -p admission-server
  ADMISSION_SERVER_BIN="$CARGO_TARGET_DIR/release/admission-server"
fi
export ADMISSION_SERVER_BIN
cargo run --quiet --locked -p admission-log --example transparency_fixtures -- "$work/fixtures"

printf '\n== verifying them independently\n'
"$work/venv/bin/python" tests/transparency/verify_fixtures.py "$work/fixtures"

printf '\n== verifying the release server in dev mode independently\n'
"$work/venv/bin/python" tests/transparency/verify_live.py
