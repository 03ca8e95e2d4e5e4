#!/usr/bin/env bash
# The CI integrations in integrations/: shellcheck on the GitHub Action's script; action.yml
# hands every input to that script; the GitLab CI snippet's admit job, run as GitLab would run
# its script, against the real `admission-server dev` (admitted in dev, rejected in prod with
# exit status 1, unavailable with 3); and the Argo CD PreSync Job validated as a Kubernetes
# manifest, its admissionctl arguments parsed by the real CLI. The action's script itself is
# run end to end by client/tests/admissionctl_contract.rs. Installs what it needs.
#
# Environment: ADMISSION_SERVER_BIN, ADMISSIONCTL_BIN (see .ci/lib/dev-server.bash).
set -euo pipefail

cd "$(dirname "$0")/.."
source .ci/lib/dev-server.bash

KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.37.0

work="$(mktemp -d)"
trap 'stop_dev; rm -rf "$work"' EXIT

have() { command -v "$1" >/dev/null 2>&1; }
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
PATH="$PATH:$(python3 -m site --user-base || true)/bin"
export PATH

if ! have shellcheck; then
  step "installing shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
pip_packages=()
python3 -c 'import yaml' 2>/dev/null || pip_packages+=("PyYAML==6.0.3")
have kubernetes-validate || pip_packages+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
if [ "${#pip_packages[@]}" -gt 0 ]; then
  step "installing ${pip_packages[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${pip_packages[@]}"
  hash -r
fi

step "shellcheck integrations/github-action/admit.sh"
shellcheck integrations/github-action/admit.sh
pass "admit.sh is clean"

step "action.yml passes every input to admit.sh"
python3 - <<'PYTHON'
import re, sys, yaml

with open("integrations/github-action/action.yml") as f:
    action = yaml.safe_load(f)
with open("integrations/github-action/admit.sh") as f:
    script = f.read()
steps = {step["id"]: step for step in action["runs"]["steps"]}
env = steps["admit"]["env"]
used = set(re.findall(r"\$\{\{ inputs\.([a-z-]+) \}\}", yaml.safe_dump(action["runs"])))
missing = set(action["inputs"]) - used
if missing:
    sys.exit(f"inputs never used: {sorted(missing)}")
for name in env:
    if name not in script:
        sys.exit(f"admit.sh does not read {name}")
for output in ("decision_id", "admitted", "reason"):
    if f"steps.admit.outputs.{output}" not in action["outputs"][output]["value"]:
        sys.exit(f"output {output} is not the admit step's")
    if f"output {output} " not in script:
        sys.exit(f"admit.sh never writes {output}")
PYTHON
pass "every input reaches admit.sh and every output comes from it"

step "the GitLab CI admit job against admission-server dev"
ensure_binaries admissionctl
dir="$work/dev"
start_dev "$dir"
python3 - "$work/gitlab-admit.sh" <<'PYTHON'
import sys, yaml

with open("integrations/gitlab-ci/.gitlab-ci.yml") as f:
    pipeline = yaml.safe_load(f)
job = pipeline["admit"]
assert job["retry"]["exit_codes"] == [3], job["retry"]
assert job["artifacts"]["reports"]["dotenv"] == "admission.env", job["artifacts"]
with open(sys.argv[1], "w") as f:
    f.write("\n".join(job["script"]) + "\n")
PYTHON
shellcheck --shell=sh "$work/gitlab-admit.sh"
bin="$work/bin"
mkdir -p "$bin" "$work/job/deploy"
ln -s "$ADMISSIONCTL" "$bin/admissionctl"
printf 'pipeline=payments-api\nversion=2026.11.24\n' >"$work/job/deploy/spec.kv"
printf 'db_pool=20\n' >"$work/job/deploy/bundle.cfg"
# Runs the job's script in $work/job as a GitLab runner would, with environment $1; the exit
# status is the job's.
gitlab_job() {
  (cd "$work/job" && env -i PATH="$bin:$PATH" HOME="$work" ADMISSION_ENV="$1" \
    ADMISSION_ENDPOINT="${2:-$DEV_ENDPOINT}" ADMISSION_CA="$dir/ca.pem" \
    ADMISSION_CERT="$dir/orchestrator.pem" ADMISSION_KEY="$dir/orchestrator.key" \
    CI_PROJECT_NAME=payments CI_PROJECT_ID=7 CI_PIPELINE_ID=100 CI_JOB_ID="$RANDOM$RANDOM" \
    CI_COMMIT_SHA=0123abc GITLAB_USER_LOGIN=alice sh -e "$work/gitlab-admit.sh")
}
gitlab_job dev/app/dev || fail "the dev deploy was not admitted"
grep -q '^ADMISSION_DECISION_ID=dec_' "$work/job/admission.env" \
  || fail "no decision id in admission.env: $(cat "$work/job/admission.env")"
pass "a dev deploy is admitted and its decision id handed to the deploy job"
status=0
out="$(gitlab_job dev/app/prod)" || status=$?
[[ $status -eq 1 ]] || fail "a prod deploy without approval should exit 1, got $status: $out"
[[ "$out" == "rejected: APPROVAL_REQUIRED: "* ]] || fail "unexpected rejection text: $out"
pass "a prod deploy without approval fails the job with exit status 1: $out"
status=0
out="$(gitlab_job dev/app/dev https://localhost:1)" || status=$?
[[ $status -eq 3 ]] || fail "an unreachable service should exit 3, got $status: $out"
pass "an unreachable service is exit status 3, which the job retries"

step "the Argo CD PreSync Job"
kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" \
  integrations/argocd/presync-job.yaml
python3 - "$work/argocd-args" <<'PYTHON'
import sys, yaml

with open("integrations/argocd/presync-job.yaml") as f:
    job = yaml.safe_load(f)
annotations = job["metadata"]["annotations"]
assert annotations["argocd.argoproj.io/hook"] == "PreSync", annotations
container = job["spec"]["template"]["spec"]["containers"][0]
assert container["command"] == ["admissionctl"], container["command"]
rule = job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]
assert rule["containerName"] == container["name"] and rule["values"] == [1, 2], rule
env = {e["name"]: e["value"] for e in container["env"]}
args = [a.replace("$(RELEASE_VERSION)", env["RELEASE_VERSION"]) for a in container["args"]]
with open(sys.argv[1], "w") as f:
    f.write("\n".join(args) + "\n")
PYTHON
mapfile -t argocd_args <"$work/argocd-args"
# The same arguments against the dev server, with the mounted files laid out locally.
local_args=()
for arg in "${argocd_args[@]}"; do
  case "$arg" in
    /release/*) local_args+=("$work/job/deploy/${arg#/release/}") ;;
    acme/payments/prod) local_args+=(dev/app/prod) ;;
    *) local_args+=("$arg") ;;
  esac
done
status=0
out="$(env ADMISSION_ENDPOINT="$DEV_ENDPOINT" ADMISSION_CA="$dir/ca.pem" \
  ADMISSION_CERT="$dir/orchestrator.pem" ADMISSION_KEY="$dir/orchestrator.key" \
  "$ADMISSIONCTL" "${local_args[@]}")" || status=$?
[[ $status -eq 1 && "$out" == *'"reason":"APPROVAL_REQUIRED"'* ]] \
  || fail "the Job's admissionctl arguments should reach a rejection, got $status: $out"
pass "the Job validates, and its arguments reach the service (rejected without approval)"

step "integrations passed"
