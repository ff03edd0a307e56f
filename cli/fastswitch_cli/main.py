"""`fastswitch` entry point: one subcommand per job, each implemented in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module implementing `add_arguments(parser)` and `run(args) -> int`, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("fastswitch_cli.up", "run frontend + scheduler + kvstore + worker(s) locally on 127.0.0.1"),
    "bench": ("fastswitch_cli.bench", "replay a multi-tenant workload: baseline vs FastSwitch"),
    "generate": ("fastswitch_cli.generate", "generate text via a frontend or in-process"),
    "frontend": ("fastswitch_cli.frontend", "run one frontend (the client-facing API) service"),
    "scheduler": ("fastswitch_cli.scheduler", "run the scheduler (control plane) service"),
    "worker": ("fastswitch_cli.worker", "run one worker service"),
    "kvstore": ("fastswitch_cli.kvstore", "run the kvstore service"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported: a slim image (frontend, scheduler, kvstore)
    runs its own subcommand without torch, and `--help` stays fast. Each module imports what
    only running needs (torch, matplotlib) inside its `run`."""
    parser = argparse.ArgumentParser(prog="fastswitch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(chosen).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
