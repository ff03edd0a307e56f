"""fastswitch.settings on a tiny config: options from the declarations, flag over variable over
default, nested configs, secrets kept off command lines, and config -> args -> config."""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass, field

import pytest

from fastswitch import settings
from fastswitch.settings import setting


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    """Inner settings: a nested config."""

    depth_ms: float = setting(2.5, help="how deep")
    password: str = setting("", secret=True, from_file=True, flag="", help="a secret")


@dataclass(frozen=True)
class Outer:
    num_items: int = setting(3, help="how many, at most 100%")
    name: str = setting("x", env="FASTSWITCH_OUTER_NAME", help="a name")
    colour: Colour = setting(Colour.RED, help="a colour")
    is_on: bool = setting(True, help="on or off")
    limit_bytes: int | None = setting(None, help="a limit")
    hosts: tuple[str, ...] = setting((), help="hosts")
    level: str = setting("info", choices=("info", "debug"), parse=str.lower, help="a level")
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.num_items < 0:
            raise ValueError("num_items must be >= 0")


def parser_for(cls: type = Outer, **options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, cls, **options)
    return parser


def build(*argv: str, environ: dict[str, str] | None = None, **options) -> Outer:
    return settings.from_args(Outer, parser_for(**options).parse_args(argv), environ or {})


def test_flags_and_variables_are_derived_from_the_field_names_unless_declared():
    items = {item.name: item for item in settings.declared(Outer)}
    assert (items["num_items"].flag, items["num_items"].env) == (
        "--num-items", ("FASTSWITCH_NUM_ITEMS",))
    assert items["name"].env == ("FASTSWITCH_OUTER_NAME",)
    assert (items["password"].flag, items["password"].file_flag, items["password"].file_env) == (
        None, "--password-file", "FASTSWITCH_PASSWORD_FILE")
    assert items["depth_ms"].owner is Inner


def test_the_flag_wins_over_the_variable_which_wins_over_the_default():
    environ = {"FASTSWITCH_NUM_ITEMS": "7", "FASTSWITCH_OUTER_NAME": "env"}
    assert build().num_items == 3
    assert build(environ=environ).num_items == 7
    assert build("--num-items", "9", environ=environ).num_items == 9
    assert build(environ=environ).name == "env"
    assert build(environ={"FASTSWITCH_NUM_ITEMS": ""}).num_items == 3  # empty counts as unset


def test_values_are_converted_by_type():
    config = build("--colour", "blue", "--no-is-on", "--limit-bytes", "10", "--hosts", "a, b,",
                   "--level", "DEBUG", "--depth-ms", "0.5")
    assert config == Outer(colour=Colour.BLUE, is_on=False, limit_bytes=10, hosts=("a", "b"),
                           level="debug", inner=Inner(depth_ms=0.5))
    environ = {"FASTSWITCH_IS_ON": "no", "FASTSWITCH_COLOUR": "blue", "FASTSWITCH_HOSTS": "c"}
    assert (build(environ=environ).is_on, build(environ=environ).colour,
            build(environ=environ).hosts) == (False, Colour.BLUE, ("c",))


def test_a_bad_flag_is_a_usage_error_and_a_bad_variable_names_itself():
    with pytest.raises(SystemExit):
        parser_for().parse_args(["--colour", "green"])
    with pytest.raises(ValueError, match="FASTSWITCH_NUM_ITEMS"):
        build(environ={"FASTSWITCH_NUM_ITEMS": "many"})
    with pytest.raises(ValueError, match="FASTSWITCH_IS_ON"):
        build(environ={"FASTSWITCH_IS_ON": "maybe"})
    with pytest.raises(ValueError, match="num_items must be"):
        build("--num-items", "-1")  # the config validates


def test_a_secret_comes_from_its_variable_or_a_file_and_stays_off_command_lines(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    assert build(environ={"FASTSWITCH_PASSWORD": "from-env"}).inner.password == "from-env"
    assert build("--password-file", str(secret_file)).inner.password == "from-file"
    assert build(environ={"FASTSWITCH_PASSWORD_FILE": str(secret_file)}).inner.password == \
        "from-file"
    with pytest.raises(ValueError, match="cannot read --password-file"):
        build("--password-file", str(tmp_path / "missing"))
    config = Outer(inner=Inner(password="hunter2-hunter2"))
    assert settings.to_args(config) == []
    assert settings.to_env(config) == {"FASTSWITCH_PASSWORD": "hunter2-hunter2"}
    assert "hunter2" not in repr(config)


def test_a_config_survives_the_trip_through_a_command_line():
    config = Outer(num_items=0, name="y", colour=Colour.BLUE, is_on=False, limit_bytes=1 << 20,
                   hosts=("a:1", "b:2"), level="debug", inner=Inner(depth_ms=0.1, password="pw"))
    args = settings.to_args(config)
    assert "--no-is-on" in args and "--hosts=a:1,b:2" in args
    parsed = parser_for().parse_args(args)
    assert settings.from_args(Outer, parsed, settings.to_env(config)) == config
    assert settings.to_args(Outer()) == []  # defaults are left out


def test_a_command_may_take_some_settings_with_defaults_of_its_own():
    parser = parser_for(only=("num_items", "name"), defaults={"num_items": 5})
    assert "--colour" not in parser.format_help()
    # Settings the command does not take keep their defaults, even when a variable is set.
    config = settings.from_args(Outer, parser.parse_args([]), {"FASTSWITCH_COLOUR": "blue"})
    assert (config.num_items, config.colour) == (5, Colour.RED)
    with pytest.raises(TypeError, match="not added"):
        parser_for(only=("name",), defaults={"num_items": 5})


def test_options_of_the_command_itself_are_not_read_as_settings():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name-of-run", dest="num_items", default="not a setting")
    settings.add_arguments(parser, Outer, only=("name",))
    assert settings.from_args(Outer, parser.parse_args([]), {}).num_items == 3


def test_help_names_the_variable_and_the_default_and_groups_nested_configs():
    help_text = " ".join(parser_for().format_help().split())
    assert "how many, at most 100% (env FASTSWITCH_NUM_ITEMS; default 3)" in help_text
    assert "(env FASTSWITCH_OUTER_NAME; default x)" in help_text
    assert "Inner settings" in help_text
    assert "--is-on, --no-is-on" in help_text and "default on" in help_text


def test_every_field_must_be_declared():
    @dataclass(frozen=True)
    class Undeclared:
        num_items: int = 3

    with pytest.raises(TypeError, match="Undeclared.num_items"):
        parser_for(Undeclared)


def test_env_names_lists_every_variable_read():
    assert settings.env_names(Inner) == {"FASTSWITCH_DEPTH_MS", "FASTSWITCH_PASSWORD",
                                         "FASTSWITCH_PASSWORD_FILE"}
