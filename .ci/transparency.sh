#!/usr/bin/env bash
# Transparency log: an independent verifier (tests/transparency/verify_fixtures.py, written from
# RFC 6962/9162, C2SP signed-note and DSSE, with PyPI securesystemslib for DSSE) checks a
# receipt, signed checkpoints, inclusion proofs and a consistency proof made by the
# admission-log crate, and that tampered copies are rejected. Installs what it needs into a
# fresh venv; run from anywhere.
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
  "securesystemslib[crypto]==${SECURESYSTEMSLIB_VERSION}" "ruff==${RUFF_VERSION}"
# The same rules as clients/python.
ruff="$work/venv/bin/ruff"
"$ruff" format --check --line-length 100 tests/transparency
"$ruff" check --line-length 100 --target-version py310 --select E,F,I,UP,B,SIM,RUF \
  tests/transparency

printf '\n== writing a log'"'"'s artefacts\n'
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
cargo run --quiet --locked -p admission-log --example transparency_fixtures -- "$work/fixtures"

printf '\n== verifying them independently\n'
"$work/venv/bin/python" tests/transparency/verify_fixtures.py "$work/fixtures"
