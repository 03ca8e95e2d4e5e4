#!/usr/bin/env bash
# The contract under the standard proto toolchains: every file under proto/ compiles with stock
# protoc (grpcio-tools), `buf lint` and `buf format` pass, and `buf breaking` finds no wire or
# JSON break against the proto of the base commit. Installs its own tools; run from anywhere.
#
# Environment:
#   PROTO_BREAKING_BASE  commit to compare against (default: see breaking_base below)
#   BUF_VERSION          @bufbuild/buf release to install (default below)
set -euo pipefail

cd "$(dirname "$0")/.."

GRPCIO_TOOLS_VERSION="${GRPCIO_TOOLS_VERSION:-1.85.1}"
BUF_VERSION="${BUF_VERSION:-1.75.0}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'proto.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------

step "installing grpcio-tools ${GRPCIO_TOOLS_VERSION} and buf ${BUF_VERSION}"
python3 -m pip install --quiet --disable-pip-version-check "grpcio-tools==${GRPCIO_TOOLS_VERSION}"
# buf goes into a per-version cache outside the repository, so reruns skip the download.
buf_prefix="${XDG_CACHE_HOME:-$HOME/.cache}/admission-ci/buf-${BUF_VERSION}"
buf="${buf_prefix}/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  npm install --silent --no-audit --no-fund --prefix "$buf_prefix" "@bufbuild/buf@${BUF_VERSION}"
fi
"$buf" --version

# --- stock protoc ----------------------------------------------------------------------------

step "protoc: compiling every proto file"
grpc_tools_include="$(python3 -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
mapfile -t protos < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
[[ ${#protos[@]} -gt 0 ]] || fail "no proto files under proto/"
mkdir -p "$work/protoc"
python3 -m grpc_tools.protoc \
  -I proto -I "$grpc_tools_include" \
  --include_imports --descriptor_set_out="$work/protoc/descriptor.binpb" \
  --python_out="$work/protoc" --grpc_python_out="$work/protoc" \
  "${protos[@]}"
printf 'compiled %d files: %s\n' "${#protos[@]}" "${protos[*]}"

# --- buf lint and format ---------------------------------------------------------------------

step "buf lint"
"$buf" lint

step "buf format"
"$buf" format --diff --exit-code

# --- buf breaking ----------------------------------------------------------------------------

# The commit the change is judged against:
# 1. PROTO_BREAKING_BASE when set (a CI system that knows the pull request's base passes it);
# 2. else the merge base with origin/main, when origin/main exists and that merge base is not
#    HEAD itself (a branch is compared with where it left main);
# 3. else HEAD~1 (on main itself, or a clone without origin/main: the last change is checked).
# A shallow clone (CI's `--depth 1`) lacks these commits, so the script first deepens the
# history by what it needs; a root commit has nothing before it and skips the check.
breaking_base() {
  if [[ -n "${PROTO_BREAKING_BASE:-}" ]]; then
    git rev-parse --verify --quiet "${PROTO_BREAKING_BASE}^{commit}" \
      || fail "PROTO_BREAKING_BASE=${PROTO_BREAKING_BASE} is not a commit"
    return
  fi
  local head merge_base
  head="$(git rev-parse HEAD)"
  if git rev-parse --verify --quiet origin/main >/dev/null; then
    if [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
      git fetch --quiet --unshallow origin >&2 2>/dev/null || git fetch --quiet --deepen=200 origin >&2 || true
    fi
    merge_base="$(git merge-base HEAD origin/main 2>/dev/null || true)"
    if [[ -n "$merge_base" && "$merge_base" != "$head" ]]; then
      echo "$merge_base"
      return
    fi
  fi
  if ! git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null \
    && [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
    git fetch --quiet --deepen=1 origin >&2 2>/dev/null || true
  fi
  if git rev-parse --verify --quiet 'HEAD~1^{commit}'; then
    return
  fi
  if [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
    fail "shallow clone without the parent commit, and it cannot be fetched; set PROTO_BREAKING_BASE or fetch more history"
  fi
  echo ""
}

step "buf breaking"
base="$(breaking_base)"
if [[ -z "$base" ]]; then
  echo "HEAD is the root commit: nothing to compare against"
else
  echo "against $(git log -1 --format='%h %s' "$base")"
  # The base tree is exported with `git archive` rather than buf's `.git#ref=` input: that works
  # the same in worktrees (where .git is a file), shallow clones and detached checkouts.
  mkdir -p "$work/base"
  git archive "$base" -- proto buf.yaml 2>/dev/null | tar -x -C "$work/base" \
    || git archive "$base" -- proto | tar -x -C "$work/base" \
    || fail "the base commit $base has no proto/ directory"
  # Before buf.yaml existed the layout was the same; judge it with today's configuration.
  [[ -f "$work/base/buf.yaml" ]] || cp buf.yaml "$work/base/buf.yaml"
  "$buf" breaking --against "$work/base"
fi

step "proto checks passed"
