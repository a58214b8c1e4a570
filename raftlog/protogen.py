"""Generates raftlog/v1/*_pb2*.py from proto/ and checks that the checked-in copy is fresh.

Usage: python -m raftlog.protogen generate|check
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _generate_into(out_dir: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: imported only when generating

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in _proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _generated_files(root: Path) -> dict[str, Path]:
    base = root / "raftlog" / "v1"
    return {p.name: p for p in base.glob("*") if p.name.endswith(GENERATED_SUFFIXES)}


def generate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _generate_into(Path(tmp))
        target = REPO_ROOT / "raftlog" / "v1"
        for old in _generated_files(REPO_ROOT).values():
            old.unlink()
        for name, path in _generated_files(Path(tmp)).items():
            (target / name).write_bytes(path.read_bytes())


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        _generate_into(Path(tmp))
        fresh = _generated_files(Path(tmp))
        current = _generated_files(REPO_ROOT)
        stale = sorted(set(fresh) ^ set(current))
        stale += sorted(n for n in set(fresh) & set(current) if not filecmp.cmp(fresh[n], current[n], shallow=False))
        if stale:
            print("generated gRPC code is stale; run `make proto`: " + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"generated gRPC code is fresh ({len(fresh)} files)")
        return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["generate"]:
        generate()
        return 0
    if argv[1:] == ["check"]:
        return check()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
