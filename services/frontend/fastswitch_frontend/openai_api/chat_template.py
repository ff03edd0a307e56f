"""A checkpoint's chat template, rendered as Hugging Face transformers renders it.

Where it comes from: `chat_template.jinja` in the model directory (what recent transformers
save), else `chat_template` in its tokenizer_config.json (a string, or a list of named templates
of which "default" is used). The frontend has the model directory already (`--model`, the
directory its tokenizer.json comes from), so the template needs no message of its own.

How it renders: a jinja2 ImmutableSandboxedEnvironment (templates come with checkpoints and are
untrusted code) with trim_blocks and lstrip_blocks, the `loopcontrols` extension, a `tojson`
that does not escape HTML, `raise_exception`, `strftime_now` and `namespace` as transformers
provides them, and the special tokens of tokenizer_config.json (`bos_token`, `eos_token`, ...)
as variables. A checkpoint's template writes its own BOS, so its prompt is tokenized without
adding special tokens (as transformers' apply_chat_template and vLLM do).

Presets (dummy weights) and checkpoints without a template get DEFAULT_TEMPLATE: one line per
message, `<|role|>` then the content, and `<|assistant|>` to open the answer; the tokenizer adds
its BOS as for any plain prompt.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from fastswitch.tokenizer import TokenizerLoadError, read_json_object

TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


class ChatTemplateError(ValueError):
    """The template cannot be loaded or compiled (at startup), or refuses a conversation
    (`raise_exception`, an error while rendering: the request's fault)."""


class ChatTemplate:
    """A compiled chat template; immutable."""

    def __init__(self, source: str, origin: str, special_tokens: dict[str, str] | None = None,
                 *, add_special_tokens: bool = False) -> None:
        """Raises ChatTemplateError when `source` does not compile. `origin` names where it came
        from (for messages); `special_tokens` (bos_token etc. as text) are template variables;
        `add_special_tokens`: whether tokenizing the rendered prompt adds the BOS."""
        self.source = source
        self.origin = origin
        self.special_tokens = dict(special_tokens or {})
        self.add_special_tokens = add_special_tokens
        try:
            self._compiled = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the chat template of {origin} does not compile: {exc}") from exc

    @classmethod
    def default(cls) -> ChatTemplate:
        return cls(DEFAULT_TEMPLATE, "the built-in default", add_special_tokens=True)

    @classmethod
    def for_model(cls, model: str) -> ChatTemplate:
        """The template of checkpoint directory `model`, or the default for a preset or a
        checkpoint without one. Raises ChatTemplateError for a template file that cannot be read
        or compiled."""
        directory = Path(model)
        if not directory.is_dir():
            return cls.default()
        config = _read_tokenizer_config(directory / TOKENIZER_CONFIG_FILE)
        specials = {name: text for name in SPECIAL_TOKEN_NAMES
                    if (text := _token_text(config.get(name))) is not None}
        template_file = directory / TEMPLATE_FILE
        if template_file.is_file():
            try:
                source = template_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ChatTemplateError(f"cannot read {template_file}: {exc}") from exc
            return cls(source, str(template_file), specials)
        source = _named_template(config.get("chat_template"))
        if source is None:
            return cls.default()
        return cls(source, str(directory / TOKENIZER_CONFIG_FILE), specials)

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text of `messages` (dicts with at least `role` and `content`). Raises
        ChatTemplateError when the template refuses them."""
        try:
            return self._compiled.render(messages=messages, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt,
                                         **self.special_tokens)
        except jinja2.TemplateError as exc:  # raise_exception, a sandbox refusal, ...
            raise ChatTemplateError(f"the chat template refused the messages: {exc}") from exc
        except (TypeError, ValueError, LookupError, AttributeError) as exc:
            # A template that assumes a shape the messages do not have (messages[0] of an
            # empty list, `+` on a missing field): the request's fault, not the server's.
            raise ChatTemplateError(f"the chat template cannot render these messages: "
                                    f"{type(exc).__name__}: {exc}") from exc


def _read_tokenizer_config(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path)
    except TokenizerLoadError as exc:
        raise ChatTemplateError(str(exc)) from exc


def _named_template(value: Any) -> str | None:
    """tokenizer_config.json's `chat_template`: a string, or [{"name", "template"}] where the
    one named "default" is the chat template (the others are for tool use or RAG)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {item.get("name"): item.get("template") for item in value if isinstance(item, dict)}
        template = named.get("default")
        return template if isinstance(template, str) else None
    return None


def _token_text(token: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: "</s>" or {"content": "</s>", ...}."""
    content = token.get("content") if isinstance(token, dict) else token
    return content if isinstance(content, str) else None


# ---- the environment transformers renders templates in ---------------------------------------
def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters (<, >, &, '), which changes prompts.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _Namespace(jinja2.utils.Namespace):
    """`namespace()` that refuses underscore-prefixed attributes (no reaching into internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 (Jinja's own signature trick)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template cannot set underscore-prefixed attributes ({name!r})")


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (marks the assistant's tokens for training):
    renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    environment.globals["namespace"] = _Namespace
    return environment
