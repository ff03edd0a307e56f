"""The `fastswitch` command's surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastswitch_cli import main as cli


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastswitch_cli.main", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for name in ("up", "bench", "generate", "scheduler", "worker", "kvstore"):
        assert name in result.stdout


def test_unknown_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


def test_unbuilt_subcommand_says_so_and_fails(monkeypatch, capsys) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "later", ("fastswitch_cli.not_a_module", "later"))
    assert cli.main(["later"]) == cli.NOT_BUILT_EXIT_CODE
    assert "not built yet" in capsys.readouterr().err


def test_a_slim_subcommand_does_not_import_torch() -> None:
    code = ("import sys; from fastswitch_cli import main as m; m.build_parser('kvstore'); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
