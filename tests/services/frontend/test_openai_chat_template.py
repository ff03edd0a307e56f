"""Chat templates render as Hugging Face transformers renders them (its apply_chat_template is
the reference), load from where checkpoints keep them, and refuse what they should.

data/qwen3_tokenizer_config.json is a Qwen3 checkpoint's tokenizer_config.json (its
`added_tokens_decoder` and `additional_special_tokens` left out): a real template with a
namespace, reversed loops, string methods, `tojson` and thinking blocks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fastswitch_frontend.openai_api.chat import chat_prompt, conversation_id, parse_messages
from fastswitch_frontend.openai_api.chat_template import (
    DEFAULT_TEMPLATE,
    ChatTemplate,
    ChatTemplateError,
)
from fastswitch_frontend.openai_api.errors import ApiError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QWEN3_CONFIG = Path(__file__).parent / "data" / "qwen3_tokenizer_config.json"
LLAMA2_STYLE = (  # the shape of Llama-2-chat's template: BOS per turn, raise_exception
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content']"
    ".strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content']"
    ".strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
CONVERSATIONS = [
    [{"role": "user", "content": "Hi <b>&amp; \"quotes\" é 🙂"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello!"},
     {"role": "user", "content": "Again"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
     {"role": "user", "content": "e"}],
]


def transformers_render(config: dict, messages: list[dict]) -> str:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = {name: config[name] for name in ("bos_token", "eos_token", "pad_token")
                if isinstance(config.get(name), str)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), **specials)
    tokenizer.chat_template = config["chat_template"]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def checkpoint_dir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_a_real_checkpoint_template_renders_as_transformers_renders_it(tmp_path, messages) -> None:
    shutil.copy(QWEN3_CONFIG, tmp_path / "tokenizer_config.json")
    template = ChatTemplate.for_model(str(tmp_path))
    config = json.loads(QWEN3_CONFIG.read_text())
    rendered = template.render(messages)
    assert rendered == transformers_render(config, messages)
    assert rendered.endswith("<|im_start|>assistant\n<think>\n")
    assert template.add_special_tokens is False  # the template writes what it needs
    assert template.special_tokens == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def test_special_tokens_come_from_tokenizer_config_in_either_form(tmp_path) -> None:
    config = {"chat_template": LLAMA2_STYLE, "bos_token": "<s>",
              "eos_token": {"content": "</s>", "special": True}}
    template = ChatTemplate.for_model(str(checkpoint_dir(tmp_path, config)))
    messages = CONVERSATIONS[2]
    rendered = template.render(messages)
    assert rendered == transformers_render({**config, "eos_token": "</s>"}, messages)
    assert rendered.startswith("<s>[INST] a [/INST] b </s><s>[INST] c")


def test_raise_exception_in_a_template_refuses_the_conversation(tmp_path) -> None:
    config = {"chat_template": LLAMA2_STYLE, "bos_token": "<s>", "eos_token": "</s>"}
    template = ChatTemplate.for_model(str(checkpoint_dir(tmp_path, config)))
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        template.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_chat_template_jinja_wins_over_tokenizer_config_and_named_templates_pick_default(tmp_path) -> None:
    named = [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "DEFAULT"}]
    checkpoint_dir(tmp_path, {"chat_template": named})
    assert ChatTemplate.for_model(str(tmp_path)).render(CONVERSATIONS[0]) == "DEFAULT"
    (tmp_path / "chat_template.jinja").write_text("FILE {{ messages|length }}")
    assert ChatTemplate.for_model(str(tmp_path)).render(CONVERSATIONS[1]) == "FILE 4"


def test_presets_and_checkpoints_without_a_template_get_the_documented_default(tmp_path) -> None:
    for template in (ChatTemplate.for_model("tiny"),
                     ChatTemplate.for_model(str(checkpoint_dir(tmp_path, {"eos_token": "</s>"})))):
        assert template.source == DEFAULT_TEMPLATE
        assert template.add_special_tokens is True  # the tokenizer adds its BOS
        assert template.render(CONVERSATIONS[1][:2]) == (
            "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n")


def test_tojson_keeps_html_characters_and_the_sandbox_holds(tmp_path) -> None:
    checkpoint_dir(tmp_path, {"chat_template": "{{ messages[0] | tojson }}"})
    assert ChatTemplate.for_model(str(tmp_path)).render([{"role": "user", "content": "<a&b>"}]) == (
        '{"role": "user", "content": "<a&b>"}')
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    checkpoint_dir(tmp_path, {"chat_template": escape})
    with pytest.raises(ChatTemplateError):
        ChatTemplate.for_model(str(tmp_path)).render(CONVERSATIONS[0])
    checkpoint_dir(tmp_path, {"chat_template": "{% set ns = namespace(_x=1) %}"})
    with pytest.raises(ChatTemplateError):
        ChatTemplate.for_model(str(tmp_path)).render(CONVERSATIONS[0])


def test_a_template_that_does_not_compile_fails_at_load(tmp_path) -> None:
    checkpoint_dir(tmp_path, {"chat_template": "{% for m in messages %}"})
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate.for_model(str(tmp_path))


def test_messages_accept_text_parts_and_refuse_the_rest() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert parse_messages([{"role": "user", "content": parts, "name": "ann"}]) == [
        {"role": "user", "content": "one\ntwo", "name": "ann"}]
    for bad in ([], [{"content": "x"}], [{"role": "user", "content": 3}],
                [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
                "hello"):
        with pytest.raises(ApiError) as caught:
            parse_messages(bad)
        assert caught.value.status == 400 and caught.value.param == "messages"


def test_the_derived_conversation_id_depends_on_tenant_and_opening_tokens() -> None:
    first = conversation_id("alice", [1, 2, 3])
    assert first == conversation_id("alice", [1, 2, 3])
    assert first != conversation_id("bob", [1, 2, 3])
    assert first != conversation_id("alice", [1, 2, 3, 4])
    assert first != conversation_id("alice", [12, 3])  # ids are separated, not concatenated


def test_generation_blocks_and_loop_controls_render_as_in_transformers(tmp_path) -> None:
    source = ("{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
              "{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}]{% endgeneration %}"
              "{% else %}{{ m.content }}{% endif %}{% endfor %}")
    config = {"chat_template": source, "eos_token": "</s>"}
    template = ChatTemplate.for_model(str(checkpoint_dir(tmp_path, config)))
    messages = CONVERSATIONS[2]
    assert template.render(messages) == transformers_render(config, messages) == "a[b]"


def test_a_checkpoint_prompt_has_the_templates_bos_once_and_the_default_gets_the_tokenizers(
        tmp_path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from fastswitch.tokenizer import HFTokenizer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(["hello world [INST] [/INST]"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos_id = tokenizer.token_to_id("<s>")
    # Like Llama's tokenizer.json: encoding adds <s> by itself.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos_id)])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    checkpoint_dir(tmp_path, {"chat_template": LLAMA2_STYLE, "bos_token": "<s>", "eos_token": "</s>"})
    loaded = HFTokenizer.from_dir(tmp_path)
    messages = [{"role": "user", "content": "hello world"}]
    token_ids, _ = chat_prompt({"messages": messages}, ChatTemplate.for_model(str(tmp_path)),
                               loaded, "alice")
    assert token_ids.count(bos_id) == 1 and token_ids[0] == bos_id
    assert loaded.decode(token_ids, skip_special_tokens=False) == "<s>[INST] hello world [/INST]"
    default_ids, _ = chat_prompt({"messages": messages}, ChatTemplate.default(), loaded, "alice")
    assert default_ids[0] == bos_id and default_ids.count(bos_id) == 1
