#!/usr/bin/env bash
# Asks the ByteOr admission service to admit one deploy, for the GitHub Action beside this
# file (action.yml) or any CI that sets the same variables.
#
# Inputs (environment):
#   ADMISSION_ENDPOINT        https:// URL of the service (required)
#   INPUT_CA, INPUT_CERT,     the CA certificate, client certificate and client key: PEM text
#   INPUT_KEY                 (e.g. from secrets; written to files readable by this user only,
#                             removed on exit) or paths to PEM files (required)
#   INPUT_ENVIRONMENT         target as ORG/PROJECT/ENV (required)
#   INPUT_SPEC                the spec_kv file (required)
#   INPUT_BUNDLE              the config bundle file; its SHA-256 is the bundle digest (required)
#   INPUT_BUNDLE_ID           config bundle id (default: the bundle's file name)
#   INPUT_PIPELINE_VERSION    the version deployed (default: GITHUB_SHA)
#   INPUT_APPROVAL            approval id whose credentials to attach (optional)
#   INPUT_CREDENTIAL          approval credential(s) to attach, one per line (optional)
#   INPUT_REQUEST_ID          idempotency key (default: from the run id, attempt and job)
#   INPUT_INITIATED_BY        on whose behalf (default: GITHUB_ACTOR)
#   INPUT_TIMEOUT             admissionctl --timeout (default: its own)
#   ADMISSIONCTL              the admissionctl binary (default: admissionctl on PATH)
#   GITHUB_OUTPUT             file the outputs are appended to (default: none)
#
# Outputs (appended to GITHUB_OUTPUT as name=value lines): decision_id, admitted (true or
# false), reason (empty when admitted).
#
# Exit status: admissionctl's. 0 admitted; 1 rejected; 2 bad inputs; 3 service unavailable.
# Every failure also prints a GitHub `::error::` annotation with the operator message.
set -euo pipefail

ctl="${ADMISSIONCTL:-admissionctl}"
work=""
trap 'if [[ -n "$work" ]]; then rm -rf "$work"; fi' EXIT

# Escapes text for a workflow command (a `::error::` line).
escape() {
  local text="$1"
  text="${text//'%'/'%25'}"
  text="${text//$'\r'/'%0D'}"
  text="${text//$'\n'/'%0A'}"
  printf '%s' "$text"
}

# Prints an annotation titled $1 with message $2 and exits with status $3.
fail() {
  printf '::error title=%s::%s\n' "$(escape "$1")" "$(escape "$2")"
  exit "$3"
}

require() {
  local name="$1"
  [[ -n "${!name:-}" ]] || fail "Admission input missing" "$name is not set" 2
}

# The file holding PEM input $2 (text or a path), under the name $1 in $work.
pem_file() {
  if [[ "$2" != *"-----BEGIN"* ]]; then
    printf '%s' "$2"
    return
  fi
  (umask 077 && printf '%s\n' "$2" >"$work/$1")
  printf '%s' "$work/$1"
}

# Field $1 of the JSON object in $2 (empty when missing or null), with jq or else python3.
field() {
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg key "$1" '.[$key] // empty | tostring' <<<"$2"
  else
    python3 -c 'import json, sys
value = json.loads(sys.argv[2]).get(sys.argv[1])
print("" if value is None else str(value).lower() if isinstance(value, bool) else value)' \
      "$1" "$2"
  fi
}

output() {
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  fi
}

for name in ADMISSION_ENDPOINT INPUT_CA INPUT_CERT INPUT_KEY INPUT_ENVIRONMENT INPUT_SPEC \
  INPUT_BUNDLE; do
  require "$name"
done
command -v "$ctl" >/dev/null 2>&1 || fail "admissionctl not found" "no admissionctl at $ctl" 2

run_id="${GITHUB_RUN_ID:-local}-${GITHUB_RUN_ATTEMPT:-1}-${GITHUB_JOB:-admit}"
request_id="${INPUT_REQUEST_ID:-gh-${run_id//[^A-Za-z0-9._:-]/-}}"
args=(--json deploy admit
  --env "$INPUT_ENVIRONMENT"
  --spec "$INPUT_SPEC"
  --bundle-file "$INPUT_BUNDLE"
  --bundle-id "${INPUT_BUNDLE_ID:-$(basename "$INPUT_BUNDLE")}"
  --pipeline-version "${INPUT_PIPELINE_VERSION:-${GITHUB_SHA:-unknown}}"
  --initiated-by "${INPUT_INITIATED_BY:-${GITHUB_ACTOR:-github-actions}}"
  --request-id "$request_id")
if [[ -n "${INPUT_APPROVAL:-}" ]]; then
  args+=(--approval "$INPUT_APPROVAL")
fi
while IFS= read -r credential; do
  if [[ -n "$credential" ]]; then args+=(--credential "$credential"); fi
done <<<"${INPUT_CREDENTIAL:-}"
if [[ -n "${INPUT_TIMEOUT:-}" ]]; then
  args=(--timeout "$INPUT_TIMEOUT" "${args[@]}")
fi

# Secrets given as PEM text go to files only this user can read, removed on exit.
work="$(umask 077 && mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/admission.XXXXXX")"
export ADMISSION_ENDPOINT
ADMISSION_CA="$(pem_file ca.pem "$INPUT_CA")"
ADMISSION_CERT="$(pem_file client.pem "$INPUT_CERT")"
ADMISSION_KEY="$(pem_file client.key "$INPUT_KEY")"
export ADMISSION_CA ADMISSION_CERT ADMISSION_KEY

status=0
answer="$("$ctl" "${args[@]}")" || status=$?
if [[ "$answer" != "{"* ]]; then
  fail "Admission failed" "admissionctl exited $status without an answer: $answer" "$((status ? status : 3))"
fi

decision_id="$(field decision_id "$answer")"
reason="$(field reason "$answer")"
output decision_id "$decision_id"
if [[ $status -eq 0 ]]; then
  output admitted true
  output reason ""
  echo "admitted: decision $decision_id (request $request_id)"
  exit 0
fi
output admitted false
output reason "$reason"
message="$(field message "$answer")"
detail="${reason:+$reason: }$message${decision_id:+ (decision $decision_id)}"
case "$status" in
  1) fail "Admission rejected" "$detail" 1 ;;
  2) fail "Admission inputs refused" "$detail" 2 ;;
  *) fail "Admission service unavailable" "$detail" "$status" ;;
esac
