"""The README's example, run as written against the dev server."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
from conftest import DevServer

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_is_rejected_then_admitted(
    dev_server: DevServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "the README has one python example"
    example = blocks[0]
    # Only the address and the month-stamped kid differ from the dev server the README describes.
    for written, actual in (
        ("localhost:50051", dev_server.endpoint),
        ("dev-2026-12", dev_server.kid),
    ):
        assert written in example
        example = example.replace(written, actual)
    for name in ("ca.pem", "orchestrator.pem", "orchestrator.key", "signing.key"):
        shutil.copy(dev_server.dir / name, tmp_path / name)
    (tmp_path / "spec.kv").write_text(f"pipeline=readme\nversion={uuid.uuid4().hex}\n")
    monkeypatch.chdir(tmp_path)

    exec(compile(example, str(README), "exec"), {})

    assert capsys.readouterr().out.startswith("dec_")
