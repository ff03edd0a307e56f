"""`fastswitch up` gives every service a /metrics port of its own and prints where."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

CLI = [sys.executable, "-m", "fastswitch_cli.main"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# A metric each service exports, whatever it has served.
EXPECTED = {"kvstore": "fastswitch:kvstore_redis_up", "worker-0": "vllm:kv_cache_usage_perc",
            "scheduler": "vllm:num_requests_waiting",
            "frontend-0": "fastswitch:frontend_open_requests"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_prints_a_metrics_url_per_service_and_each_serves_prometheus_text() -> None:
    up = subprocess.Popen([*CLI, "up", "--port", str(free_port()), "--http-port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        lines = []
        while not (lines and lines[-1].startswith("metrics: ")):
            line = up.stdout.readline()
            assert line, "".join(lines) + up.stderr.read()
            lines.append(line)
        urls = dict(re.findall(r"(\S+) (http://127\.0\.0\.1:\d+/metrics)", lines[-1]))
        assert set(urls) == set(EXPECTED), lines[-1]
        assert len(set(urls.values())) == len(urls)  # a port each
        for service, url in urls.items():
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
            assert EXPECTED[service] in exported, service
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
