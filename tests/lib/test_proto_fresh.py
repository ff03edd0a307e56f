"""The committed generated code is exactly what scripts/gen_proto.py produces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    fresh = _load_generator().generate(tmp_path)
    committed_dir = REPO / "lib" / "fastswitch" / "v1"
    fresh_names = {p.name for p in fresh}
    committed_names = {p.name for p in committed_dir.iterdir() if p.is_file()}
    assert fresh_names == committed_names, "run `make proto`: generated file set differs"
    for path in fresh:
        assert path.read_bytes() == (committed_dir / path.name).read_bytes(), (
            f"{path.name} is stale: run `make proto`"
        )


def test_api_names_match_the_design_contract() -> None:
    from fastswitch.v1 import kvstore_pb2, scheduler_pb2, worker_pb2

    scheduler = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"]
    assert scheduler.full_name == "fastswitch.v1.Scheduler"
    generate = scheduler.methods_by_name["Generate"]
    assert generate.server_streaming and not generate.client_streaming
    session = worker_pb2.DESCRIPTOR.services_by_name["Worker"].methods_by_name["Session"]
    assert session.server_streaming and session.client_streaming
    assert kvstore_pb2.DESCRIPTOR.services_by_name["KVStore"].full_name == "fastswitch.v1.KVStore"


def test_buf_lint_passes() -> None:
    import subprocess
    import sys

    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run([buf, "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
