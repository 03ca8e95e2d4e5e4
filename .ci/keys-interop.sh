#!/usr/bin/env bash
# Signing keys every tool reads. Takes the signing.key written by `admission-server dev` and one
# written by `admissionctl keygen`, reads each with `openssl pkey` and with Python
# `cryptography` (both must yield the public key published in the key set), signs an approval
# credential for each in Python, and has the running server admit a prod deploy with it. A
# credential signed with the wrong key is refused SIGNATURE_INVALID. PKCS#8 v2 keys (as older
# releases wrote them) still work: `admissionctl sign` signs with one, and the server, given
# one as its [signing] key, issues credentials it then admits.
#
# Environment: ADMISSION_SERVER_BIN, ADMISSIONCTL_BIN (see .ci/lib/dev-server.bash).
set -euo pipefail

cd "$(dirname "$0")/.."
source .ci/lib/dev-server.bash

CRYPTOGRAPHY_VERSION="${CRYPTOGRAPHY_VERSION:-48.0.0}"
keys_py="$PWD/.ci/lib/interop_keys.py"

work="$(mktemp -d)"
trap 'stop_dev; rm -rf "$work"' EXIT

step "installing cryptography ${CRYPTOGRAPHY_VERSION}"
python3 -m pip install --quiet --disable-pip-version-check "cryptography==${CRYPTOGRAPHY_VERSION}"
command -v openssl >/dev/null || { apt-get install -y -qq openssl >/dev/null; }
openssl version

step "starting admission-server dev"
ensure_binaries admissionctl
dir="$work/dev"
start_dev "$dir"
dev_kid="$(sed -n 's/^kid = "\(.*\)"$/\1/p' "$dir/admission.toml")"
[[ -n "$dev_kid" ]] || fail "no [signing] kid in $dir/admission.toml"

spec="$work/spec.kv"
printf 'pipeline=payments-api\nversion=2026.11.24\n' >"$spec"

# admissionctl as a dev identity (orchestrator unless named), with nothing from the caller's
# environment.
ctl() {
  local as="orchestrator"
  if [[ "$1" == --as=* ]]; then as="${1#--as=}"; shift; fi
  env -u ADMISSION_INITIATED_BY ADMISSION_ENDPOINT="$DEV_ENDPOINT" ADMISSION_CA="$dir/ca.pem" \
    ADMISSION_CERT="$dir/$as.pem" ADMISSION_KEY="$dir/$as.key" "$ADMISSIONCTL" "$@"
}

# Fails unless PEM key file $1 is PKCS#8 v2 (version INTEGER 1, public key included).
expect_v2() {
  openssl asn1parse -in "$1" | head -2 | grep -Eq 'INTEGER +:01$' || fail "$1 is not PKCS#8 v2"
}

# Deploys the spec to dev/app/prod with credential $2 under request id $1; prints the JSON.
admit_prod() {
  ctl --json deploy admit --env dev/app/prod --spec "$spec" --pipeline-version 2026.11.24 \
    --bundle-id bundle-1 \
    --bundle-digest sha256:0000000000000000000000000000000000000000000000000000000000000000 \
    --initiated-by alice@dev.local --request-id "$1" "${@:2}"
}

# Checks that admit_prod answered admitted with approval $2; $1 is its output.
expect_admitted() {
  python3 - "$1" "$2" <<'EOF' || fail "expected an admission with approval $2, got: $1"
import json, sys
answer = json.loads(sys.argv[1])
assert answer["admitted"] is True, answer
assert answer["approval_ids"] == [sys.argv[2]], answer
EOF
}

# Python signs a prod credential with key file $1 under kid $2 for approval $3.
python_sign() {
  python3 "$keys_py" sign "$1" --kid "$2" --org dev --project app --env prod --posture prod \
    --spec "$spec" --capability deploy --issued-by spiffe://dev.local/reviewer/bob \
    --approval-id "$3"
}

# Reads key file $1 with openssl and Python; both must give the key set's x for kid $2.
check_readable() {
  local key="$1" kid="$2" published from_openssl from_python
  published="$(python3 "$keys_py" jwk-x "$dir/signing_keys.json" "$kid")"
  openssl pkey -in "$key" -noout || fail "openssl pkey cannot read $key"
  # The DER SubjectPublicKeyInfo of an Ed25519 key ends with the 32 raw public key bytes.
  from_openssl="$(openssl pkey -in "$key" -pubout -outform DER | tail -c 32 | base64 -w0 \
    | tr '+/' '-_' | tr -d '=')"
  from_python="$(python3 "$keys_py" public-x "$key")" || fail "cryptography cannot read $key"
  [[ "$from_openssl" == "$published" ]] \
    || fail "$key: openssl public key $from_openssl differs from the key set's $published"
  [[ "$from_python" == "$published" ]] \
    || fail "$key: cryptography public key $from_python differs from the key set's $published"
  pass "$key is read by openssl and cryptography; its public key is $kid in the key set"
}

step "admissionctl keygen, and a PKCS#8 v2 key, added to the key set"
ctl keygen --kid ci-keygen-1 --out "$work/keygen.key" --jwks "$dir/signing_keys.json"
v2_x="$(python3 "$keys_py" new-v2 "$work/v2.key")"
expect_v2 "$work/v2.key"
python3 "$keys_py" add-jwk "$dir/signing_keys.json" ci-v2-1 -- "$v2_x"
kill -HUP "$DEV_PID"
for _ in $(seq 1 300); do
  grep -q 'key set reloaded' "$DEV_LOG" && break
  sleep 0.1
done
grep -q 'key set reloaded' "$DEV_LOG" || fail "the server did not reload its key set on SIGHUP"

step "the dev server's signing.key"
check_readable "$dir/signing.key" "$dev_kid"
answer="$(admit_prod keys-dev-1 --credential "$(python_sign "$dir/signing.key" "$dev_kid" apr_py_dev)")" \
  || fail "the credential signed in Python with the dev key was refused: $answer"
expect_admitted "$answer" apr_py_dev
pass "a credential signed in Python with the dev key is admitted"

step "the admissionctl keygen key"
check_readable "$work/keygen.key" ci-keygen-1
answer="$(admit_prod keys-keygen-1 --credential "$(python_sign "$work/keygen.key" ci-keygen-1 apr_py_keygen)")" \
  || fail "the credential signed in Python with the keygen key was refused: $answer"
expect_admitted "$answer" apr_py_keygen
pass "a credential signed in Python with the keygen key is admitted"

step "a credential signed with another key than its kid names"
set +e
answer="$(admit_prod keys-wrong-1 --credential "$(python_sign "$work/keygen.key" "$dev_kid" apr_py_wrong)")"
status=$?
set -e
[[ $status -eq 1 ]] || fail "expected exit status 1 (rejected), got $status: $answer"
python3 - "$answer" <<'EOF' || fail "expected SIGNATURE_INVALID, got: $answer"
import json, sys
answer = json.loads(sys.argv[1])
assert answer["admitted"] is False and answer["reason"] == "SIGNATURE_INVALID", answer
EOF
pass "refused with SIGNATURE_INVALID"

step "a PKCS#8 v2 key through admissionctl sign"
credential="$(ctl sign --signing-key "$work/v2.key" --kid ci-v2-1 --org dev --project app \
  --env prod --posture prod --spec "$spec" --capability deploy --ttl 10m \
  --issued-by spiffe://dev.local/reviewer/bob --approval-id apr_cli_v2)" \
  || fail "admissionctl sign refused the v2 key: $credential"
answer="$(admit_prod keys-v2-1 --credential "$credential")" \
  || fail "the credential signed with the v2 key was refused: $answer"
expect_admitted "$answer" apr_cli_v2
pass "admissionctl signs with a v2 key and the server admits it"

step "a PKCS#8 v2 key as the server's [signing] key"
stop_dev
python3 "$keys_py" to-v2 "$dir/signing.key"
expect_v2 "$dir/signing.key"
start_dev "$dir"
created="$(ctl --json approvals create --env dev/app/prod --spec "$spec" \
  --justification "release 2026.11.24" --initiated-by alice@dev.local)" \
  || fail "approvals create failed: $created"
approval_id="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["approval_id"])' "$created")"
decided="$(ctl --as=reviewer --json approvals decide "$approval_id" --approve)" \
  || fail "approvals decide failed (the server signs the credential here): $decided"
answer="$(admit_prod keys-v2-server-1 --approval "$approval_id")" \
  || fail "the credential the server signed with its v2 key was refused: $answer"
expect_admitted "$answer" "$approval_id"
pass "the server loads a v2 [signing] key and admits the credentials it issues"

step "key interop passed"
