#!/usr/bin/env bash
# HTTP/JSON (the Connect protocol) on the gRPC port, from foreign clients against the real
# admission-server binary in dev mode:
#   1. curl with the dev client certificates: a dev deploy admitted (200, decisionId), a prod
#      deploy refused (403, permission_denied, ErrorInfo APPROVAL_REQUIRED with its decision id),
#      both decision ids in Audit.List, a caller without the role refused (403), bad JSON
#      (400 naming the field), the wrong content type (415) and no client certificate (refused
#      in the handshake);
#   2. the real Connect client for Node (clients/connect-node: @connectrpc/connect-node with
#      @bufbuild/protobuf generated code) over mTLS, with `node --test`.
# Needs curl (with HTTP/2), python3, node and npm.
#
# Environment: ADMISSION_SERVER_BIN (see .ci/lib/dev-server.bash).
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"
source .ci/lib/dev-server.bash

command -v curl >/dev/null || fail "curl is not installed"
curl --version | grep -q 'HTTP2' || fail "this curl has no HTTP/2 support"

work="$(mktemp -d)"
trap 'stop_dev; rm -rf "$work"' EXIT

step "starting admission-server dev"
ensure_binaries
dir="$work/dev"
start_dev "$dir"

# POST $2 (JSON) to /byteor.admission.v1.$1 as the dev identity $3; prints the HTTP status on
# the first line and the body after it.
connect() {
  local rpc="$1" body="$2" identity="${3:-orchestrator}"
  curl -sS --cacert "$dir/ca.pem" --cert "$dir/$identity.pem" --key "$dir/$identity.key" \
    -H 'Content-Type: application/json' -w '\n%{http_code}' --max-time 30 \
    --data-binary "$body" "$DEV_ENDPOINT/byteor.admission.v1.$rpc"
}

# Splits connect's output: the status into $status, the body into $body.
split_reply() {
  status="${1##*$'\n'}"
  body="${1%$'\n'*}"
}

spec_b64="$(printf 'pipeline=payments-api\nversion=2026.11.24\n' | base64 -w0)"
deploy_json() {
  cat <<EOF
{"requestId": "$1",
 "environment": {"orgId": "dev", "projectId": "app", "environmentId": "$2"},
 "pipelineVersion": "2026.11.24",
 "specKv": "$spec_b64",
 "configBundle": {"bundleId": "bundle-1", "environmentId": "$2",
   "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
 "initiatedBy": "alice@dev.local"}
EOF
}

step "curl: DeployAdmission/Admit to dev/app/dev: 200 with an Admission"
split_reply "$(connect DeployAdmission/Admit "$(deploy_json curl-dev-1 dev)")"
echo "$status $body"
[[ "$status" == 200 ]] || fail "expected 200, got $status: $body"
admitted_id="$(python3 - "$body" <<'EOF'
import json, sys
admission = json.loads(sys.argv[1])
assert admission["decisionId"].startswith("dec_"), admission
assert admission["action"] == "ACTION_DEPLOY", admission
assert admission["specHash"].startswith("sha256:"), admission
print(admission["decisionId"])
EOF
)" || fail "the answer is not an Admission: $body"
pass "admitted as $admitted_id"

step "curl: DeployAdmission/Admit to dev/app/prod without approval: 403 APPROVAL_REQUIRED"
split_reply "$(connect DeployAdmission/Admit "$(deploy_json curl-prod-1 prod)")"
echo "$status $body"
[[ "$status" == 403 ]] || fail "expected 403, got $status: $body"
rejected_id="$(python3 - "$body" <<'EOF'
import base64, json, sys
error = json.loads(sys.argv[1])
assert error["code"] == "permission_denied", error
assert error["message"], error
infos = [d for d in error["details"] if d["type"] == "google.rpc.ErrorInfo"]
assert len(infos) == 1, error
info = infos[0]
value = info["value"]
base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
assert info["debug"]["reason"] == "APPROVAL_REQUIRED", info
assert info["debug"]["domain"] == "byteor.admission.v1", info
print(info["debug"]["metadata"]["decision_id"])
EOF
)" || fail "the answer is not a Connect error with ErrorInfo: $body"
pass "rejected as $rejected_id"

step "curl: Audit/List as the auditor: both decisions are in the trail"
split_reply "$(connect Audit/List '{}' auditor)"
[[ "$status" == 200 ]] || fail "expected 200, got $status: $body"
python3 - "$body" "$admitted_id" "$rejected_id" <<'EOF' || fail "the audit trail does not hold both decisions: $body"
import json, sys
entries = json.loads(sys.argv[1])["entries"]
by_id = {entry["entryId"]: entry for entry in entries}
assert by_id[sys.argv[2]]["outcome"] == "admitted", by_id
assert by_id[sys.argv[3]]["reason"] == "APPROVAL_REQUIRED", by_id
EOF
pass "decision ids match the audit trail"

step "curl: Audit/List as the orchestrator: 403 CALLER_NOT_AUTHORIZED"
split_reply "$(connect Audit/List '{}' orchestrator)"
echo "$status $body"
[[ "$status" == 403 ]] || fail "expected 403, got $status: $body"
grep -q '"reason":"CALLER_NOT_AUTHORIZED"' <<<"$body" || fail "no CALLER_NOT_AUTHORIZED: $body"
pass "a caller without the role is refused"

step "curl: a field of the wrong type: 400 naming it"
split_reply "$(connect DeployAdmission/Admit '{"environment": {"orgId": 7}}')"
echo "$status $body"
[[ "$status" == 400 ]] || fail "expected 400, got $status: $body"
grep -q '"code":"invalid_argument"' <<<"$body" || fail "not invalid_argument: $body"
grep -q 'environment.orgId' <<<"$body" || fail "the error does not name environment.orgId: $body"
pass "bad JSON names the field"

step "curl: text/plain: 415"
status="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$dir/ca.pem" \
  --cert "$dir/orchestrator.pem" --key "$dir/orchestrator.key" -H 'Content-Type: text/plain' \
  --data-binary '{}' "$DEV_ENDPOINT/byteor.admission.v1.DeployAdmission/Admit")"
[[ "$status" == 415 ]] || fail "expected 415, got $status"
pass "the wrong content type is 415"

step "curl without a client certificate: refused in the handshake"
if curl -sS -o /dev/null --cacert "$dir/ca.pem" -H 'Content-Type: application/json' \
  --data-binary '{}' "$DEV_ENDPOINT/byteor.admission.v1.DeployAdmission/Admit" 2>"$work/nocert.err"; then
  fail "a client without a certificate got an answer"
fi
cat "$work/nocert.err"
pass "no certificate, no answer"

stop_dev

step "the Connect client for Node (clients/connect-node)"
export ADMISSION_SERVER_BIN="$SERVER_BIN"
cd "$root/clients/connect-node"
npm ci --no-audit --no-fund
npm test

step "connect interop passed"
