"""Chat messages -> the prompt's token ids, and the conversation id that lets the next turn
reuse this turn's KV.

Why a derived conversation id: OpenAI clients send the whole conversation every turn and name
no conversation. Frontends are stateless replicas (any of them may get the next turn), so no
frontend can keep a map from conversations to ids, and the scheduler should not have to. What
every turn of one conversation has in common is its opening: the messages up to and including
the first user message. The id is a hash of the tenant and the token ids of that opening
(rendered with the generation prompt, exactly as the first turn's prompt was), so every turn of
the conversation, on any frontend, carries the same id; the scheduler routes it to the worker
holding the previous turn's KV, and the worker reuses the longest common token prefix (prompt
and answer of the previous turn; engine/reuse_cache.py).

Limits: conversations with identical openings (the same system prompt and first question) share
one cache slot per tenant, so one may evict or take over the other's KV; each turn then reuses
only what its prompt really has in common (the worker matches tokens block by block), so outputs
are never wrong, only less KV is reused. The tenant is part of the hash and of the id's scope
(`<tenant>:<id>`): two tenants never share. A turn ended by a stop string is cancelled on its
worker, which keeps no KV of it for the next turn.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastswitch.tokenizer import Tokenizer
from fastswitch_frontend.openai_api.chat_template import ChatTemplate, ChatTemplateError
from fastswitch_frontend.openai_api.errors import invalid

MAX_MESSAGES = 4096


def chat_prompt(body: dict[str, Any], template: ChatTemplate, tokenizer: Tokenizer,
                tenant: str) -> tuple[list[int], str]:
    """(the prompt's token ids, the derived conversation id; "" when there is no user
    message). Raises ApiError (400) for malformed messages or ones the template refuses."""
    messages = parse_messages(body.get("messages"))
    token_ids = render_tokens(template, tokenizer, messages)
    opening_len = next((i + 1 for i, m in enumerate(messages) if m["role"] == "user"), None)
    if opening_len is None:
        return token_ids, ""
    opening_ids = (token_ids if opening_len == len(messages)
                   else render_tokens(template, tokenizer, messages[:opening_len]))
    return token_ids, conversation_id(tenant, opening_ids)


def render_tokens(template: ChatTemplate, tokenizer: Tokenizer,
                  messages: list[dict[str, Any]]) -> list[int]:
    try:
        text = template.render(messages, add_generation_prompt=True)
    except ChatTemplateError as exc:
        raise invalid(str(exc), "messages") from exc
    return tokenizer.encode(text, add_special_tokens=template.add_special_tokens)


def conversation_id(tenant: str, opening_token_ids: list[int]) -> str:
    """`chat-<32 hex>`: fits validation.CONVERSATION_ID; scoped to the tenant again by the
    request (`<tenant>:<id>`)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(tenant.encode())
    digest.update(b"\0")
    digest.update(",".join(map(str, opening_token_ids)).encode())
    return f"chat-{digest.hexdigest()}"


def parse_messages(value: Any) -> list[dict[str, Any]]:
    """The messages as the template sees them: role, content (text) and name when given."""
    if not isinstance(value, list) or not value:
        raise invalid("'messages' must be a non-empty list", "messages")
    if len(value) > MAX_MESSAGES:
        raise invalid(f"at most {MAX_MESSAGES} messages", "messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object", "messages")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise invalid(f"{where}.role must be a non-empty string", "messages")
        parsed = {"role": role, "content": _text_content(message.get("content"), where)}
        if isinstance(message.get("name"), str):
            parsed["name"] = message["name"]
        if message.get("tool_calls"):
            raise invalid(f"{where}: tool calls are not supported", "messages")
        messages.append(parsed)
    return messages


def _text_content(content: Any, where: str) -> str:
    """A string, or a list of text parts (joined by newlines, as vLLM does); null is empty."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise invalid(f"{where}.content: only text parts ({{\"type\": \"text\", "
                              "\"text\": ...}) are supported", "messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(f"{where}.content must be a string or a list of text parts", "messages")
