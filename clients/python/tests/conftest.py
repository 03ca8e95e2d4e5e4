"""Runs the real release `admission-server` in dev mode for the tests that talk to it.

The binary comes from `ADMISSION_SERVER_BIN`. Dev mode writes a CA, client certificates for
every role, a signing key and `admission.toml` into a temporary directory and listens on a port
the kernel picks; the port is read from the instructions it prints.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
from grpc_health.v1 import health_pb2

from byteor_admission import AdmissionClient, connect

# Generous: a cold start on a loaded machine; the server normally prints within a second.
STARTUP_SECONDS = 60.0
ROLES = ("orchestrator", "reviewer", "reviewer2", "auditor")


@dataclass(frozen=True)
class DevServer:
    """A running dev-mode server and the files it wrote."""

    dir: Path
    endpoint: str
    kid: str

    def client(self, role: str) -> AdmissionClient:
        """A client using the certificate dev mode issued for `role`."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        return connect(
            self.endpoint,
            ca=self.dir / "ca.pem",
            cert=self.dir / f"{role}.pem",
            key=self.dir / f"{role}.key",
        )


def server_binary() -> Path:
    value = os.environ.get("ADMISSION_SERVER_BIN")
    if not value:
        pytest.fail("ADMISSION_SERVER_BIN must name the release admission-server binary")
    path = Path(value)
    if not os.access(path, os.X_OK):
        pytest.fail(f"ADMISSION_SERVER_BIN={value} is not an executable file")
    return path


def read_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """Reads stdout until dev mode prints its endpoint (raw reads: select sees no buffered data)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    printed = b""
    while selector.select(timeout=STARTUP_SECONDS):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        printed += chunk
        match = re.search(rb"https://localhost:(\d+)\D", printed)
        if match:
            return int(match.group(1))
    process.kill()
    pytest.fail(
        "admission-server dev printed no endpoint; stdout:\n"
        + printed.decode(errors="replace")
        + "\nstderr:\n"
        + log.read_text(errors="replace")
    )


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    work = tmp_path_factory.mktemp("admission-dev")
    dev_dir, log = work / "dev", work / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(server_binary()), "dev", "--dir", str(dev_dir), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        port = read_port(process, log)
        config = tomllib.loads((dev_dir / "admission.toml").read_text())
        server = DevServer(
            dir=dev_dir, endpoint=f"https://localhost:{port}", kid=config["signing"]["kid"]
        )
        with server.client("orchestrator") as client:
            status = client.health(timeout=STARTUP_SECONDS, wait_for_ready=True)
        assert status == health_pb2.HealthCheckResponse.SERVING
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def orchestrator(dev_server: DevServer) -> Iterator[AdmissionClient]:
    with dev_server.client("orchestrator") as client:
        yield client


@pytest.fixture
def reviewer(dev_server: DevServer) -> Iterator[AdmissionClient]:
    with dev_server.client("reviewer") as client:
        yield client


@pytest.fixture
def auditor(dev_server: DevServer) -> Iterator[AdmissionClient]:
    with dev_server.client("auditor") as client:
        yield client
