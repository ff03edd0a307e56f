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


@pytest.mark.parametrize("command", list(cli.SUBCOMMANDS))
def test_help_imports_neither_torch_nor_matplotlib(command) -> None:
    """`--help` (and a slim image's own subcommand) loads only what parsing needs."""
    code = (f"import sys; from fastswitch_cli import main as m; m.build_parser({command!r}); "
            "print(sorted({'torch', 'matplotlib'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
