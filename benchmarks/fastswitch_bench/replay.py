"""Replays a Workload against a scheduler over gRPC and records what clients see.

Every conversation runs as one task: wait for its arrival, then per turn send the full prompt
(previous prompt + the answer actually received + the new user tokens) with the conversation
id, stream the answer, think, go on. Times are taken at the client, in seconds since start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_bench.breakdown import PHASES
from fastswitch_bench.workload import Conversation, Workload, next_turn_prompt, prompt_token_ids

# Keep the byte tokenizer's specials (256, 257) out of prompts: ids below are bytes.
NUM_RESERVED_IDS = 258


@dataclass
class TurnRecord:
    conversation_id: str
    tenant: str
    turn_index: int
    sent_s: float
    token_times_s: list[float] = field(default_factory=list)  # one entry per token received
    done_s: float | None = None
    error: str = ""
    num_reused_prompt_tokens: int = 0
    # The frontend's RequestTiming of the final response: ms per phase (breakdown.PHASES).
    phases_ms: dict[str, float] = field(default_factory=dict)
    num_preemptions: int = 0

    @property
    def request_id(self) -> str:
        """The id the replay sends: the same in every replay of the workload."""
        return f"{self.conversation_id}-turn{self.turn_index}"


@dataclass
class ReplayLog:
    turns: list[TurnRecord]
    duration_s: float
    num_turns_not_sent: int = 0  # turns the deadline kept from being sent


def tenant_token(tenant: str) -> str:
    """The bearer token the benchmark's tenants file maps to `tenant`."""
    return f"bench-{tenant}"


CUT_AT_DEADLINE = "CANCELLED: cut at the replay's deadline"


async def replay(workload: Workload, address: str, *, vocab_size: int, seed: int,
                 on_turn_done: Callable[[], None] = lambda: None,
                 deadline_s: float | None = None, drain_grace_s: float = 0.0) -> ReplayLog:
    """With `deadline_s`, no turn is sent after that many seconds, and turns still streaming
    `drain_grace_s` later are cut (recorded with CUT_AT_DEADLINE as their error)."""
    turns: list[TurnRecord] = []
    num_not_sent = 0
    start = time.monotonic()

    def past_deadline() -> bool:
        return deadline_s is not None and time.monotonic() - start >= deadline_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)

        async def run_conversation(conversation: Conversation) -> None:
            nonlocal num_not_sent
            await asyncio.sleep(max(0.0, conversation.arrival_s - (time.monotonic() - start)))
            prompt: list[int] = []
            answer: list[int] = []
            for index, turn in enumerate(conversation.turns):
                if index:
                    await asyncio.sleep(conversation.think_time_s[index - 1])
                if past_deadline():
                    num_not_sent += len(conversation.turns) - index
                    return
                new_user = prompt_token_ids(conversation, index, vocab_size, seed=seed,
                                            num_reserved_ids=NUM_RESERVED_IDS)
                prompt = next_turn_prompt(prompt, answer, new_user) if index else new_user
                record = TurnRecord(conversation.conversation_id, conversation.tenant, index,
                                    time.monotonic() - start)
                turns.append(record)
                answer = await _one_turn(stub, conversation, prompt, turn.output_tokens, record, start)
                on_turn_done()
                if record.error:
                    return  # the conversation cannot go on without its answer

        tasks = [asyncio.create_task(run_conversation(c)) for c in workload.conversations]
        limit_s = None if deadline_s is None else deadline_s + drain_grace_s
        _, pending = await asyncio.wait(tasks, timeout=limit_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for record in turns:
            if record.done_s is None:  # cut while streaming
                record.error = CUT_AT_DEADLINE
                record.done_s = time.monotonic() - start
    return ReplayLog(turns, time.monotonic() - start, num_not_sent)


async def _one_turn(stub, conversation: Conversation, prompt: list[int], max_tokens: int,
                    record: TurnRecord, start: float) -> list[int]:
    request = scheduler_pb2.GenerateRequest(
        request_id=record.request_id,
        token_ids=scheduler_pb2.TokenIds(ids=prompt), conversation_id=conversation.conversation_id,
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))
    metadata = (("authorization", f"Bearer {tenant_token(conversation.tenant)}"),)
    answer: list[int] = []
    try:
        async for response in stub.Generate(request, metadata=metadata):
            now = time.monotonic() - start
            answer.extend(response.token_ids)
            record.token_times_s.extend([now] * len(response.token_ids))
            if response.finish_reason:
                record.num_reused_prompt_tokens = response.usage.num_reused_prompt_tokens
                record.phases_ms = {p: getattr(response.timing, f"{p}_ms") for p in PHASES}
                record.num_preemptions = response.timing.num_preemptions
    except grpc.aio.AioRpcError as exc:
        record.error = f"{exc.code().name}: {exc.details()}"
    record.done_s = time.monotonic() - start
    return answer
