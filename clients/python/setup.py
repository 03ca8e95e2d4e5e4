"""Build hook: the protobuf and gRPC modules are generated from the repository's proto/ tree.

Generated code is never committed. `build_py` runs grpc_tools.protoc over
`byteor/admission/v1/*.proto` and writes `byteor/admission/v1/*_pb2.py`, `*_pb2.pyi` and
`*_pb2_grpc.py` next to `byteor_admission` in the build directory. An sdist carries a copy of
the .proto files, so a wheel can also be built from it outside the repository.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata, resources
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_PACKAGE = Path("byteor", "admission", "v1")
PROTO_DIR_VARIABLE = "BYTEOR_ADMISSION_PROTO_DIR"


def proto_root() -> Path:
    """The directory holding `byteor/admission/v1/*.proto`: the sdist's copy or the repository's."""
    override = os.environ.get(PROTO_DIR_VARIABLE)
    candidates = [Path(override)] if override else [HERE / "proto", HERE.parent.parent / "proto"]
    for candidate in candidates:
        if any((candidate / PROTO_PACKAGE).glob("*.proto")):
            return candidate
    searched = ", ".join(str(c / PROTO_PACKAGE) for c in candidates)
    raise SystemExit(
        f"no .proto files found in {searched}; set {PROTO_DIR_VARIABLE} to the proto/ directory"
    )


def generate(out_dir: Path) -> None:
    """Compiles every .proto of the admission API into `out_dir`."""
    from grpc_tools import protoc

    root = proto_root()
    sources = sorted(p.relative_to(root).as_posix() for p in (root / PROTO_PACKAGE).glob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={root}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit(f"protoc failed on {', '.join(sources)} under {root}")
    # PEP 561: the generated .pyi files are the types of the messages.
    (out_dir / PROTO_PACKAGE / "py.typed").touch()


def runtime_requirements() -> list[str]:
    """Runtime pins matching the grpcio-tools that generates the code."""
    tools = metadata.version("grpcio-tools")
    protobuf = [r for r in metadata.requires("grpcio-tools") or [] if r.startswith("protobuf")]
    # The generated modules check grpcio's version; grpcio-status and grpcio-health-checking
    # only need the same release line (their patch releases lag grpcio-tools' on PyPI).
    line = ".".join(tools.split(".")[:2])
    return [
        f"grpcio>={tools}",
        f"grpcio-status>={line}",
        f"grpcio-health-checking>={line}",
        *(protobuf or ["protobuf"]),
        "cryptography>=42",
    ]


class BuildPyWithProtos(build_py):
    """Copies the package as usual, then generates the API modules beside it."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        # An editable install imports from src/, so the modules are generated there (gitignored).
        target = HERE / "src" if getattr(self, "editable_mode", False) else Path(self.build_lib)
        generate(target)


class SdistWithProtos(sdist):
    """Puts the .proto files into the sdist, so it builds without the repository around it."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = proto_root() / PROTO_PACKAGE
        target = Path(base_dir, "proto", PROTO_PACKAGE)
        target.mkdir(parents=True, exist_ok=True)
        for proto in sorted(source.glob("*.proto")):
            shutil.copy2(proto, target / proto.name)


setup(
    install_requires=runtime_requirements(),
    cmdclass={"build_py": BuildPyWithProtos, "sdist": SdistWithProtos},
)
