# Shared by the interop scripts in .ci/: the release binaries, and `admission-server dev` run in
# a temporary directory on a free loopback port. Source it; it is not a CI entry point.
#
# Environment:
#   ADMISSION_SERVER_BIN  admission-server binary (default: built with cargo build --release)
#   ADMISSIONCTL_BIN      admissionctl binary (default: built with cargo build --release)

fail() {
  printf '%s: FAIL: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

step() { printf '\n== %s\n' "$*"; }

pass() { printf 'ok: %s\n' "$*"; }

# Sets SERVER_BIN (and ADMISSIONCTL when asked with "admissionctl") to usable binaries.
ensure_binaries() {
  local want_ctl="${1:-}"
  # The same default cache as .ci/run, so a local run reuses its release build.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
  local target="$CARGO_TARGET_DIR"
  if [[ -n "${ADMISSION_SERVER_BIN:-}" ]]; then
    SERVER_BIN="$ADMISSION_SERVER_BIN"
  else
    cargo build --release --locked -p admission-server >&2
    SERVER_BIN="$target/release/admission-server"
  fi
  [[ -x "$SERVER_BIN" ]] || fail "admission-server binary not found at $SERVER_BIN"
  if [[ "$want_ctl" == "admissionctl" ]]; then
    if [[ -n "${ADMISSIONCTL_BIN:-}" ]]; then
      ADMISSIONCTL="$ADMISSIONCTL_BIN"
    else
      cargo build --release --locked -p admission-client --bin admissionctl >&2
      ADMISSIONCTL="$target/release/admissionctl"
    fi
    [[ -x "$ADMISSIONCTL" ]] || fail "admissionctl binary not found at $ADMISSIONCTL"
  fi
  SERVER_BIN="$(cd "$(dirname "$SERVER_BIN")" && pwd)/$(basename "$SERVER_BIN")"
}

# Starts `admission-server dev --dir $1` on 127.0.0.1:0 and waits for its instructions, which
# it prints once the listener is bound. Sets DEV_PID, DEV_PORT, DEV_ENDPOINT and DEV_LOG.
start_dev() {
  local dir="$1"
  DEV_LOG="$dir.log"
  local out="$dir.stdout"
  : >"$out"
  RUST_LOG="${RUST_LOG:-info}" "$SERVER_BIN" dev --dir "$dir" --listen 127.0.0.1:0 \
    >"$out" 2>"$DEV_LOG" &
  DEV_PID=$!
  local _
  for _ in $(seq 1 600); do
    if grep -q -- '--endpoint' "$out"; then
      break
    fi
    kill -0 "$DEV_PID" 2>/dev/null || { cat "$out" "$DEV_LOG" >&2; fail "admission-server dev exited early"; }
    sleep 0.1
  done
  grep -q -- '--endpoint' "$out" || { cat "$out" "$DEV_LOG" >&2; fail "admission-server dev printed no instructions"; }
  DEV_PORT="$(grep -o 'https://localhost:[0-9]*' "$out" | head -1 | sed 's/.*://')"
  [[ -n "$DEV_PORT" ]] || fail "no port in the dev instructions: $(cat "$out")"
  DEV_ENDPOINT="https://localhost:$DEV_PORT"
  echo "admission-server dev (pid $DEV_PID) serving on $DEV_ENDPOINT from $dir"
}

# Stops the server started by start_dev, if it still runs.
stop_dev() {
  if [[ -n "${DEV_PID:-}" ]] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill -TERM "$DEV_PID"
    wait "$DEV_PID" 2>/dev/null || true
  fi
  DEV_PID=""
}
