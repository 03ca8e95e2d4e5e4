#!/usr/bin/env bash
# Fuzzing smoke run: builds every cargo-fuzz target under fuzz/ and runs each one for a short,
# bounded time from its committed seeds; any crash, panic, timeout or out-of-memory fails the run.
# FUZZ_SECONDS sets the time per target (default 20). Needs only the Rust toolchain: cargo-fuzz
# is installed if missing, and RUSTC_BOOTSTRAP lets the stable compiler take its nightly flags.
set -euo pipefail

cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
# Instrumented builds never share artifacts with the normal ones: keep them apart.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/admission-fuzz-target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# Safe Rust (the workspace forbids unsafe code) gains little from AddressSanitizer, and it
# would slow both the build and the runs; debug assertions turn overflows into findings.
flags=(--sanitizer none --debug-assertions)

cd fuzz
# Same dependency versions as the workspace, exactly as committed.
cargo fetch --locked
cargo fuzz build "${flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds}s"
  # A scratch corpus, so the committed seeds stay as they are.
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target"/
  # libFuzzer's per-input progress lines (NEW, REDUCE, pulse) are dropped; findings and the
  # final stats are kept, and pipefail keeps the fuzzer's exit status.
  cargo fuzz run "${flags[@]}" "$target" "$work/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    awk '!/^#[0-9]+\t(NEW|REDUCE|pulse) /'
done
echo "fuzz: every target ran ${seconds}s without a finding"
