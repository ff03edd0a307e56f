"""The /metrics HTTP server: Prometheus text from its own registry, definite answers to
anything else, and a taken port that costs only the metrics."""

from __future__ import annotations

import asyncio
import gzip
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from fastswitch.metrics_http import MetricsServer, check_metrics_port, start_metrics_server


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def registry_with(value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("fastswitch:test_events", "Events.", ["kind"], registry=registry).labels("a").inc(value)
    return registry


async def test_serves_its_own_registry_and_nothing_of_the_default_one() -> None:
    server = MetricsServer(registry_with(3), "127.0.0.1", 0)
    other = MetricsServer(registry_with(5), "127.0.0.1", 0)
    await server.start()
    await other.start()
    try:
        status, headers, body = await exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert int(headers["content-length"]) == len(body)
        samples = {s.name: s for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        assert samples["fastswitch:test_events_total"].value == 3
        assert "python_gc_objects_collected_total" not in samples  # not the global registry
        _, _, other_body = await exchange(other.port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert b"fastswitch:test_events_total{kind=\"a\"} 5.0" in other_body
    finally:
        await server.stop()
        await other.stop()


async def test_gzip_head_and_openmetrics_on_request() -> None:
    server = MetricsServer(registry_with(1), "127.0.0.1", 0)
    await server.start()
    try:
        _, headers, body = await exchange(
            server.port, b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
        assert headers["content-encoding"] == "gzip"
        assert b"fastswitch:test_events_total" in gzip.decompress(body)
        status, headers, body = await exchange(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        _, headers, body = await exchange(server.port, (
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"))
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")
    finally:
        await server.stop()


async def test_anything_but_a_scrape_gets_a_definite_status() -> None:
    server = MetricsServer(registry_with(1), "127.0.0.1", 0)
    await server.start()
    try:
        assert (await exchange(server.port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == 404
        status, headers, _ = await exchange(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert (await exchange(server.port, b"garbage\r\n\r\n"))[0] == 400
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n"
        assert (await exchange(server.port, huge))[0] == 431
        # Still serving after all that.
        assert (await exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200
    finally:
        await server.stop()


async def test_port_zero_is_off_and_a_taken_port_costs_only_the_metrics(caplog) -> None:
    assert await start_metrics_server(registry_with(1), "127.0.0.1:50051", 0) is None
    first = MetricsServer(registry_with(1), "127.0.0.1", 0)
    await first.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fastswitch.metrics"):
            second = await start_metrics_server(registry_with(2), "127.0.0.1:0", first.port)
        assert second is None
        assert "metrics port unavailable" in caplog.text
        # The first server is unaffected.
        assert (await exchange(first.port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200
    finally:
        await first.stop()
    assert first.url == f"http://127.0.0.1:{first.port}/metrics"


@pytest.mark.parametrize("port", [-1, 65536])
def test_metrics_port_must_be_a_tcp_port_or_zero(port: int) -> None:
    check_metrics_port(0)
    check_metrics_port(9400)
    with pytest.raises(ValueError, match="metrics_port"):
        check_metrics_port(port)
