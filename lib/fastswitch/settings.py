"""Settings declared once. A service's configuration is a frozen dataclass whose fields are
declared with `setting()`: the field gives the name, type and default; its metadata gives the
help, the choices and, derived from the name unless stated, the flag (`--tick-ms`) and the
environment variable (`FASTSWITCH_TICK_MS`). From that one declaration this module builds

- the argparse options (`add_arguments`), whose help names the variable and the default;
- the validated config from parsed options (`from_args`): the flag, else the variable, else
  the default; invalid values raise ValueError;
- the command line and environment that rebuild a config in another process (`to_args`,
  `to_env`), for the stacks that start the services as processes.

A field whose type is another such dataclass (the worker's `engine`, every service's
`security`) adds its settings to the same flat command line, so flag names are unique across
a service. A `secret` setting (the cluster token, a Redis URL that may hold a password) never
goes on a command line other users can read: `to_env` passes it in the environment, and with
`from_file` it also has a `--<name>-file` flag (and `FASTSWITCH_<NAME>_FILE`) naming a file that
holds it. An environment variable set to the empty string counts as unset.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ENV_PREFIX = "FASTSWITCH_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_METADATA_KEY = "fastswitch.setting"
# The namespace attribute listing the settings `add_arguments` added: `from_args` reads those
# and no other attribute, whatever options of its own a command has.
_ADDED_KEY = "_fastswitch_settings"


class SettingError(ValueError):
    """A flag, environment variable or file holds a value its setting cannot take."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one config field is set from outside; `setting()` stores it in the field."""

    help: str
    flag: str | None = None  # None: derived from the field's name; "" for no flag of its own
    env: tuple[str, ...] = ()  # the first one set wins; () derives FASTSWITCH_<NAME>
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # text -> value; None: from the field's type
    default_text: str | None = None  # how help shows the default, when str() would not do
    secret: bool = False
    from_file: bool = False


def setting(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
            env: str | Sequence[str] = (), choices: Sequence[str] = (), metavar: str | None = None,
            parse: Callable[[str], Any] | None = None, default_text: str | None = None,
            secret: bool = False, from_file: bool = False,
            default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is a setting (use it like `dataclasses.field`). A secret is left
    out of the config's repr as well as out of command lines."""
    declared = Setting(help=help, flag=flag, env=(env,) if isinstance(env, str) else tuple(env),
                       choices=tuple(choices), metavar=metavar, parse=parse,
                       default_text=default_text, secret=secret, from_file=from_file)
    return dataclasses.field(default=default, default_factory=default_factory,
                             repr=not secret, metadata={_METADATA_KEY: declared})


@dataclasses.dataclass(frozen=True)
class Declared:
    """One setting of a config, as found by walking it (nested configs included)."""

    name: str  # the field's name; unique across a config with its nested configs
    owner: type  # the dataclass declaring it
    field: dataclasses.Field
    setting: Setting
    type: Any  # the field's resolved annotation

    @property
    def flag(self) -> str | None:
        if self.setting.flag == "":
            return None
        return self.setting.flag or "--" + self.name.replace("_", "-")

    @property
    def file_flag(self) -> str | None:
        return "--" + self.name.replace("_", "-") + "-file" if self.setting.from_file else None

    @property
    def env(self) -> tuple[str, ...]:
        return self.setting.env or (ENV_PREFIX + self.name.upper(),)

    @property
    def file_env(self) -> str | None:
        return self.env[0] + "_FILE" if self.setting.from_file else None

    @property
    def default(self) -> Any:
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        return self.field.default_factory()

    def parse(self, text: str) -> Any:
        """Text (a flag's, a variable's or a file's) -> value; raises ValueError."""
        value = (self.setting.parse or _parser_for(self.type))(text)
        choices = _choices(self)
        if choices and _text(value) not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value


def declared(cls: type) -> Iterator[Declared]:
    """Every setting of config class `cls`, nested configs' included, in declaration order.
    Raises TypeError for a field that is neither a setting nor a nested config: every field
    of a config can be set from outside, so `to_args` loses nothing."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        found = field.metadata.get(_METADATA_KEY)
        if found is not None:
            yield Declared(field.name, cls, field, found, hints[field.name])
        elif dataclasses.is_dataclass(hints[field.name]):
            yield from declared(hints[field.name])
        else:
            raise TypeError(f"{cls.__name__}.{field.name} is neither declared with "
                            "settings.setting() nor a nested config")


# ---- argparse --------------------------------------------------------------------------------
class _NotGiven:
    """argparse's default for every setting: not on the command line. `default`, unless
    MISSING, replaces the field's default (`add_arguments(defaults=...)`)."""

    def __init__(self, default: Any = dataclasses.MISSING) -> None:
        self.default = default

    def __repr__(self) -> str:
        return "<not given>"


def add_arguments(parser: argparse.ArgumentParser, cls: type, *,
                  only: Sequence[str] | None = None,
                  defaults: Mapping[str, Any] | None = None) -> None:
    """Add the options of config class `cls` (nested configs get a group each). `only`: just
    these settings (by name), for commands that expose a few (`fastswitch up`); `defaults`:
    defaults of this command that differ from the declaration's (its help says why)."""
    defaults = dict(defaults or {})
    groups: dict[type, Any] = {cls: parser}
    added = set(parser.get_default(_ADDED_KEY) or ())
    for item in declared(cls):
        if only is not None and item.name not in only:
            continue
        added.add(item.name)
        if item.owner not in groups:
            # The docstring's first words: "Transport security: TLS files..." -> its title.
            title = (item.owner.__doc__ or item.owner.__name__).strip().split(":")[0]
            groups[item.owner] = parser.add_argument_group(title.splitlines()[0].rstrip("."))
        group = groups[item.owner]
        not_given = _NotGiven(defaults.pop(item.name, dataclasses.MISSING))
        default = item.default if not_given.default is dataclasses.MISSING else not_given.default
        if item.flag is not None:
            options: dict[str, Any] = {}
            if item.type is bool:
                options["action"] = argparse.BooleanOptionalAction
            else:
                options["type"] = _for_argparse(item)
                options["metavar"] = item.setting.metavar or _metavar(item)
            action = group.add_argument(item.flag, dest=item.name, default=not_given, **options)
            action.help = _help(item, default)  # set after: BooleanOptionalAction adds its own
        if item.file_flag is not None:
            group.add_argument(item.file_flag, dest=item.name + "_file", default=_NotGiven(),
                               metavar="FILE", help=_help_file(item))
    if defaults:
        raise TypeError(f"defaults for settings not added: {sorted(defaults)}")
    parser.set_defaults(**{_ADDED_KEY: frozenset(added)})


def from_args(cls: type, args: argparse.Namespace,
              environ: Mapping[str, str] | None = None) -> Any:
    """The validated config: each setting from its flag, else its environment variable, else
    its default. Settings that `add_arguments` did not add keep their defaults. Raises
    ValueError (SettingError, or the config's own validation)."""
    return _build(cls, resolve(cls, args, environ))


def resolve(cls: type, args: argparse.Namespace,
            environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """{name: value} of every setting of `cls` that its flag, its variable or the command's
    default sets: what `from_args` builds the config from, before the config checks it."""
    environ = os.environ if environ is None else environ
    found = {}
    for item in declared(cls):
        value = _resolve(item, vars(args), environ)
        if value is not dataclasses.MISSING:
            found[item.name] = _finish(item, value)
    return found


def _build(cls: type, found: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if _METADATA_KEY not in field.metadata:  # a nested config (`declared` checked that)
            kwargs[field.name] = _build(hints[field.name], found)
        elif field.name in found:
            kwargs[field.name] = found[field.name]
    return cls(**kwargs)


def _resolve(item: Declared, parsed: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """Flag, file flag, variable, file variable, this command's default; MISSING: the field's."""
    if item.name not in parsed.get(_ADDED_KEY, ()):
        return dataclasses.MISSING  # not a setting of this command
    given = parsed.get(item.name, _NotGiven()) if item.flag is not None else _NotGiven()
    file_given = parsed.get(item.name + "_file", _NotGiven())
    if not isinstance(given, _NotGiven):
        return given
    if not isinstance(file_given, _NotGiven):
        return _read(item, file_given, item.file_flag)
    for name in item.env:
        text = environ.get(name, "").strip()
        if text:
            try:
                return item.parse(text)
            except ValueError as exc:
                raise SettingError(f"{name}: {exc}") from exc
    if item.file_env is not None and environ.get(item.file_env, "").strip():
        return _read(item, environ[item.file_env].strip(), item.file_env)
    return given.default


def _read(item: Declared, path: str, source: str | None) -> Any:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise SettingError(f"cannot read {source}: {exc}") from exc
    try:
        return item.parse(text)
    except ValueError as exc:
        raise SettingError(f"{source}: the file does not hold a valid {item.name}") from exc


def _finish(item: Declared, value: Any) -> Any:
    if isinstance(item.type, type) and issubclass(item.type, enum.Enum) and isinstance(value, str):
        return item.type(value)
    return value


# ---- the other way: a config -> a child process's command line and environment ---------------
def to_args(config: Any) -> list[str]:
    """`--flag=value` for every setting of `config` that differs from its default, secrets
    excepted (`to_env`). Run with no inherited FASTSWITCH_* variables (`env_names`), the
    command rebuilds `config` exactly."""
    args = []
    for item, value in values(config):
        if item.setting.secret or value == item.default:
            continue
        if item.flag is None:
            raise ValueError(f"{item.name} has no flag to set it with")
        if item.type is bool:
            args.append(item.flag if value else "--no-" + item.flag.removeprefix("--"))
        elif value is None:
            raise ValueError(f"{item.name}=None cannot be written as a flag")
        else:
            args.append(f"{item.flag}={_text(value)}")
    return args


def to_env(config: Any) -> dict[str, str]:
    """The environment variables that carry `config`'s secrets (those not at their default)."""
    return {item.env[0]: _text(value) for item, value in values(config)
            if item.setting.secret and value != item.default}


def env_names(cls: type) -> set[str]:
    """Every environment variable config class `cls` reads: what a parent drops from the
    environment it passes on, so its children run with exactly the settings it gives them."""
    names = set()
    for item in declared(cls):
        names.update(item.env)
        if item.file_env is not None:
            names.add(item.file_env)
    return names


def values(config: Any) -> Iterator[tuple[Declared, Any]]:
    """(setting, value) of every setting of `config`, nested configs' included."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _METADATA_KEY in field.metadata:
            yield Declared(field.name, type(config), field, field.metadata[_METADATA_KEY],
                           hints[field.name]), value
        else:
            yield from values(value)


# ---- text <-> values -------------------------------------------------------------------------
def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def parse_list(text: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped: "a, b," -> ("a", "b")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _parser_for(inner)
    if typing.get_origin(annotation) is tuple:
        return parse_list
    if annotation is bool:
        return parse_bool
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return str  # checked against the choices, then made a member by _finish
    if annotation in (str, int, float):
        return annotation
    raise TypeError(f"no parser for settings of type {annotation!r}")


def _for_argparse(item: Declared) -> Callable[[str], Any]:
    """item.parse under the setting's name, which argparse shows in its error messages."""

    def convert(text: str) -> Any:
        try:
            return item.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = item.name
    return convert


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _choices(item: Declared) -> tuple[str, ...]:
    if item.setting.choices:
        return item.setting.choices
    if isinstance(item.type, type) and issubclass(item.type, enum.Enum):
        return tuple(str(member.value) for member in item.type)
    return ()


def _metavar(item: Declared) -> str:
    choices = _choices(item)
    if choices:
        return "{" + ",".join(choices) + "}"
    for suffix, metavar in (("_s", "SECONDS"), ("_ms", "MS"), ("_bytes", "BYTES")):
        if item.name.endswith(suffix):
            return metavar
    kind = _parser_for(item.type)
    return "N" if kind is int else "NUMBER" if kind is float else item.name.upper()


def _help(item: Declared, default: Any) -> str:
    if item.setting.default_text is not None:
        shown = item.setting.default_text
    elif item.setting.secret or default in (None, "", ()):
        shown = "none"
    elif item.type is bool:
        shown = "on" if default else "off"
    elif item.name.endswith("_bytes") and isinstance(default, int) and default >= 1 << 20:
        shown = f"{default} ({default / (1 << 30):g} GiB)" if default >= 1 << 30 else \
            f"{default} ({default / (1 << 20):g} MiB)"
    else:
        shown = _text(default)
    variables = " or ".join(item.env)
    return f"{item.setting.help} (env {variables}; default {shown})".replace("%", "%%")


def _help_file(item: Declared) -> str:
    return (f"a file holding the {item.name.replace('_', ' ')}: {item.setting.help} (env "
            f"{item.file_env}, or the value itself in {item.env[0]})").replace("%", "%%")
