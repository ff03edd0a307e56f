"""The worker's liveness setting: flag, environment variable, default, validation."""

from __future__ import annotations

import argparse

import pytest

from fastswitch import settings
from fastswitch_worker.service.config import WorkerConfig


def parse(argv: list[str]) -> WorkerConfig:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, WorkerConfig)
    return settings.from_args(WorkerConfig, parser.parse_args(argv))


def test_liveness_timeout_defaults_to_two_minutes(monkeypatch) -> None:
    monkeypatch.delenv("FASTSWITCH_LIVENESS_TIMEOUT_S", raising=False)
    assert parse([]).liveness_timeout_s == 120.0


def test_liveness_timeout_comes_from_the_environment_or_the_flag(monkeypatch) -> None:
    monkeypatch.setenv("FASTSWITCH_LIVENESS_TIMEOUT_S", "45")
    assert parse([]).liveness_timeout_s == 45.0
    assert parse(["--liveness-timeout-s", "300"]).liveness_timeout_s == 300.0


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_liveness_timeout_must_be_positive(value: str) -> None:
    with pytest.raises(ValueError, match="liveness_timeout_s"):
        parse(["--liveness-timeout-s", value])


def test_the_flag_is_documented() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, WorkerConfig)
    help_text = " ".join(parser.format_help().split())
    assert "--liveness-timeout-s" in help_text and "fastswitch.liveness" in help_text
    assert "FASTSWITCH_LIVENESS_TIMEOUT_S" in help_text
