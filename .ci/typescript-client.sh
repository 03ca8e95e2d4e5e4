#!/usr/bin/env bash
# The TypeScript client (clients/typescript): install from the lockfile, generate the stubs from
# proto/ and compile, then run its tests against the real admission-server binary in dev mode.
# ADMISSION_SERVER_BIN names the binary; without it the release binary is built here.
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"

if [ -z "${ADMISSION_SERVER_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
  cargo build --release --locked -p admission-server
  ADMISSION_SERVER_BIN="$CARGO_TARGET_DIR/release/admission-server"
fi
case "$ADMISSION_SERVER_BIN" in
  /*) ;;
  *) ADMISSION_SERVER_BIN="$root/$ADMISSION_SERVER_BIN" ;;
esac
export ADMISSION_SERVER_BIN
if [ ! -x "$ADMISSION_SERVER_BIN" ]; then
  echo "typescript-client: $ADMISSION_SERVER_BIN is not an executable admission-server" >&2
  exit 1
fi

cd clients/typescript
npm ci --no-audit --no-fund
npm run build
npm test
