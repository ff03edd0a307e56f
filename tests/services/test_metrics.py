"""/metrics of every service, scraped over HTTP during a real multi-tenant run that forces
preemption (two tenants, two GPU slots, a VTC threshold the light tenant crosses), parsed
with prometheus_client's own parser. The Grafana dashboard's queries are checked against the
names this run exports."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fastswitch.v1 import common_pb2, scheduler_pb2

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/fastswitch/dashboards/fastswitch.json"
MAX_TOKENS = 40
PROMPT_TOKENS = 13


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def prompt_of(index: int) -> list[int]:
    return [(index * 37 + k * 11) % 250 + 1 for k in range(PROMPT_TOKENS)]


class Scrape:
    """One /metrics page: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[str, list] = defaultdict(list)
        for family in self.families.values():
            for sample in family.samples:
                self.samples[sample.name].append(sample)

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
        return sum(s.value for s in self.samples.get(name, ())
                   if all(s.labels.get(k) == v for k, v in labels.items()))

    def names(self) -> set[str]:
        return set(self.samples)


async def scrape(url: str) -> Scrape:
    # The servers run on this test's event loop: fetch from a thread, never block the loop.
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()

    return Scrape(await asyncio.to_thread(fetch))


async def scrape_all(stack) -> dict[str, Scrape]:
    return {name: await scrape(url) for name, url in stack.metrics_urls.items()}


async def generate(stub, prompt: list[int], token: str) -> int:
    request = scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=prompt),
        stop=common_pb2.StopConditions(max_tokens=MAX_TOKENS, ignore_eos=True))
    num_tokens = 0
    async for response in stub.Generate(request, metadata=auth(token)):
        num_tokens += len(response.token_ids)
    return num_tokens


async def test_metrics_move_with_a_preempting_two_tenant_run(stack_factory) -> None:
    async with stack_factory(max_running_per_worker=2, vtc_preempt_threshold=16) as stack:
        assert set(stack.metrics_urls) == {"kvstore", "worker-0", "scheduler", "frontend"}
        before = await scrape_all(stack)
        alice = [asyncio.create_task(generate(stack.stub, prompt_of(i), "tok-a")) for i in range(8)]
        during: list[dict[str, Scrape]] = []
        while stack.scheduler.core.requests.num_of("alice") < 8:
            await asyncio.sleep(0.01)
        during.append(await scrape_all(stack))  # at most two of alice's run, six wait
        while sum(len(r.generated_token_ids) for r in stack.frontend.core.requests.values()) < 10:
            await asyncio.sleep(0.01)  # alice holds both slots: bob's arrival preempts her
        bob = [asyncio.create_task(generate(stack.stub, prompt_of(10 + i), "tok-b")) for i in range(2)]
        while not all(task.done() for task in alice + bob):
            during.append(await scrape_all(stack))
            await asyncio.sleep(0.2)
        generated = [task.result() for task in alice + bob]
        await stack.until_scheduler_idle()
        await asyncio.sleep(1.2)  # one more Jain sample after the last token
        after = await scrape_all(stack)
    assert generated == [MAX_TOKENS] * 10

    def grew(service: str, name: str, **labels: str) -> float:
        return after[service].value(name, **labels) - before[service].value(name, **labels)

    # The frontend: tokens per tenant, one TTFT and one e2e observation per finished request.
    assert grew("frontend", "vllm:generation_tokens_total", tenant="alice") == 8 * MAX_TOKENS
    assert grew("frontend", "vllm:generation_tokens_total", tenant="bob") == 2 * MAX_TOKENS
    assert grew("frontend", "vllm:prompt_tokens_total") == 10 * PROMPT_TOKENS
    finished = grew("frontend", "vllm:request_success_total", finished_reason="length")
    assert finished == 10
    assert grew("frontend", "vllm:time_to_first_token_seconds_count") == finished
    assert grew("frontend", "vllm:e2e_request_latency_seconds_count") == finished
    assert grew("frontend", "vllm:request_queue_time_seconds_count") == finished
    assert grew("frontend", "vllm:inter_token_latency_seconds_count") == 10 * (MAX_TOKENS - 1)
    assert after["frontend"].value("fastswitch:frontend_open_requests") == 0
    # The scheduler: per-tenant service as the workers reported it, the queue while alice
    # waited for slots, the preemptions its policy commanded, a fairness index.
    assert grew("scheduler", "fastswitch:tenant_served_tokens_total", tenant="alice",
                kind="generated") == 8 * MAX_TOKENS
    assert grew("scheduler", "fastswitch:tenant_served_tokens_total", tenant="bob",
                kind="generated") == 2 * MAX_TOKENS
    assert during[0]["scheduler"].value("vllm:num_requests_waiting") >= 6
    assert during[0]["scheduler"].value("fastswitch:tenant_requests_waiting", tenant="alice") >= 6
    assert after["scheduler"].value("vllm:num_requests_waiting") == 0
    assert after["scheduler"].value("vllm:num_requests_running") == 0
    assert grew("scheduler", "fastswitch:preemptions_total") >= 1  # fairness or kv_pressure
    assert after["scheduler"].value("fastswitch:jain_backlogged_tenants") == 2
    jain = after["scheduler"].value("fastswitch:jain_fairness_index")
    assert 0.5 <= jain <= 1.0  # two tenants: 1/n is the floor
    assert after["scheduler"].value("fastswitch:tenant_virtual_tokens", tenant="bob") > 0
    # The worker: the preemptions it carried out moved KV out and back, through its copies.
    worker = "worker-0"
    assert grew(worker, "vllm:num_preemptions_total") >= 1
    assert grew(worker, "fastswitch:swaps_total", direction="out") >= 1
    assert grew(worker, "fastswitch:swap_bytes_total", direction="out") > 0
    assert grew(worker, "fastswitch:swap_bytes_total", direction="in") > 0
    assert grew(worker, "fastswitch:swap_copies_total", direction="out") >= 1
    for direction in ("out", "in"):
        jobs = after[worker].value("fastswitch:swap_jobs_total", direction=direction)
        assert after[worker].value("fastswitch:swap_latency_seconds_count",
                                   direction=direction) == jobs
        assert after[worker].value("fastswitch:swap_latency_seconds_bucket", direction=direction,
                                   le="+Inf") == jobs
    for page in [*during, after]:
        usage = page[worker].value("vllm:kv_cache_usage_perc")
        assert 0.0 <= usage <= 1.0
        used = page[worker].value("fastswitch:host_kv_pool_used_bytes")
        assert 0 <= used <= page[worker].value("fastswitch:host_kv_pool_capacity_bytes")
    assert max(page[worker].value("vllm:kv_cache_usage_perc") for page in during) > 0
    # The kvstore: the worker registered there; Redis answers.
    assert after["kvstore"].value("fastswitch:kvstore_calls_total", method="RegisterWorker",
                                  code="OK") >= 1
    assert after["kvstore"].value("fastswitch:kvstore_redis_up") == 1
    check_dashboard_names(set().union(*(page.names() for page in after.values())))


async def test_a_conversations_next_turn_shows_as_a_reuse_hit(stack_factory) -> None:
    async with stack_factory() as stack:
        urls = stack.metrics_urls
        before = await scrape(urls["worker-0"])
        first = prompt_of(1)
        answer = []
        request = scheduler_pb2.GenerateRequest(
            token_ids=scheduler_pb2.TokenIds(ids=first), conversation_id="chat-1",
            stop=common_pb2.StopConditions(max_tokens=8, ignore_eos=True))
        async for response in stack.stub.Generate(request, metadata=auth("tok-a")):
            answer.extend(response.token_ids)
        # The turn's KV reaches host memory and the kvstore: the worker published it.
        async with asyncio.timeout(10):
            while not (await scrape(urls["kvstore"])).value(
                    "fastswitch:kvstore_calls_total", method="PublishKV", code="OK"):
                await asyncio.sleep(0.05)
        request = scheduler_pb2.GenerateRequest(
            token_ids=scheduler_pb2.TokenIds(ids=first + answer + [5, 6, 7]),
            conversation_id="chat-1", stop=common_pb2.StopConditions(max_tokens=4, ignore_eos=True))
        async for response in stack.stub.Generate(request, metadata=auth("tok-a")):
            final = response
        after = await scrape(urls["worker-0"])
        lookups = await scrape(urls["kvstore"])
    reused = final.usage.num_reused_prompt_tokens
    assert reused > 0
    assert after.value("fastswitch:kv_reuse_hits_total") - before.value(
        "fastswitch:kv_reuse_hits_total") == 1
    assert after.value("fastswitch:kv_reused_prompt_tokens_total") - before.value(
        "fastswitch:kv_reused_prompt_tokens_total") == reused
    assert after.value("fastswitch:swap_bytes_total", direction="in") > 0  # the prefix came back
    assert lookups.value("fastswitch:kvstore_calls_total", method="LookupKV", code="OK") >= 1


def check_dashboard_names(exported: set[str]) -> None:
    """Every metric a dashboard query names is one the services export."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    assert queries
    for query in queries:
        named = set(re.findall(r"\b((?:vllm|fastswitch):[a-zA-Z0-9_:]+)", query))
        assert named, query
        assert named <= exported, (query, named - exported)
