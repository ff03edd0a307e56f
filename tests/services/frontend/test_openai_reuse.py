"""Multi-turn KV reuse through the HTTP API: chat requests name no conversation, the frontend
derives one from the tenant and the conversation's opening, so a second turn reuses the first
turn's KV (on the worker holding it) and another tenant's identical turn reuses nothing."""

from __future__ import annotations

import openai

from fastswitch_frontend.openai_api.chat import chat_prompt

OPENING = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
MAX_TOKENS = 10


def client(stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.http_url, api_key=key, max_retries=0)


async def first_turn(stack) -> tuple[list[dict], int, str]:
    """Alice's first turn: (the second turn's messages, the first prompt's token count, the
    scoped conversation id the worker publishes the turn's KV under)."""
    answer = await client(stack, "tok-a").chat.completions.create(
        model="tiny", messages=OPENING, max_tokens=MAX_TOKENS, temperature=0,
        extra_body={"ignore_eos": True})
    assert answer.usage.prompt_tokens_details.cached_tokens == 0
    http = stack.frontend.http
    prompt_ids, conversation = chat_prompt({"messages": OPENING}, http.routes.template,
                                           stack.frontend.core.tokenizer, "alice")
    assert answer.usage.prompt_tokens == len(prompt_ids)
    second = [*OPENING, {"role": "assistant", "content": answer.choices[0].message.content},
              {"role": "user", "content": "And then?"}]
    return second, len(prompt_ids), f"alice:{conversation}"


async def test_a_second_chat_turn_reuses_the_first_turns_kv_on_its_worker(
        stack_factory, until_published) -> None:
    async with stack_factory(num_workers=2) as stack:
        second, num_first_prompt_tokens, conversation = await first_turn(stack)
        entry = await until_published(stack, conversation)  # the turn's KV is in host memory
        answer = await client(stack, "tok-a").chat.completions.create(
            model="tiny", messages=second, max_tokens=4, temperature=0,
            extra_body={"ignore_eos": True})
        holder = next(w for w in stack.workers if w.config.worker_id == entry.worker_id)
        assert holder.service.latest_stats.swap.num_swap_ins >= 1
    # The byte tokenizer re-encodes the answer's text to its own tokens, so the whole first
    # turn matches: its prompt and answer, less the answer's last token (never computed).
    assert answer.usage.prompt_tokens_details.cached_tokens == (
        num_first_prompt_tokens + MAX_TOKENS - 1)


async def test_two_tenants_with_the_same_conversation_never_share_its_kv(
        stack_factory, until_published) -> None:
    async with stack_factory() as stack:
        second, num_first_prompt_tokens, conversation = await first_turn(stack)
        await until_published(stack, conversation)
        bobs = await client(stack, "tok-b").chat.completions.create(
            model="tiny", messages=second, max_tokens=4, temperature=0,
            extra_body={"ignore_eos": True})
        alices = await client(stack, "tok-a").chat.completions.create(
            model="tiny", messages=second, max_tokens=4, temperature=0,
            extra_body={"ignore_eos": True})
    assert bobs.usage.prompt_tokens_details.cached_tokens == 0
    assert alices.usage.prompt_tokens_details.cached_tokens == num_first_prompt_tokens + MAX_TOKENS - 1
    assert bobs.choices[0].message.content == alices.choices[0].message.content  # same prompt
