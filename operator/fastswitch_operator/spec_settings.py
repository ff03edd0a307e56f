"""spec.scheduler.settings and spec.workers.settings: every setting of the scheduler and the
workers that the spec has no field of its own for, by its camelCase name, passed on as the
service's flag (`vtcQuantum: 64` -> `--vtc-quantum=64`; a boolean -> `--kv-reuse` or
`--no-kv-reuse`).

The operator imports no service, so the names and types are listed here;
tests/operator/test_args_match_the_cli.py holds this list to the services' configs both ways:
every entry is a real flag that sets what it names, and every setting of the two services is
either here or set by the operator from the spec (OWNED_ELSEWHERE). Values are type-checked and
kept non-negative here (an invalid spec is refused, not a crash-looping pod); the services check
the finer ranges when they start.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastswitch_operator.spec_fields import FieldReader

SCHEDULER_SETTINGS: dict[str, str] = {
    "discoveryIntervalS": "number",
    "vtcInputWeight": "number",
    "vtcOutputWeight": "number",
    "vtcQuantum": "number",
    "vtcFinishGuardTokens": "integer",
    "tenantIdleGraceS": "number",
    "traceNumLevels": "integer",
    "maxRunningPerWorker": "integer",
    "kvHeadroomTokens": "integer",
    "kvAdmitHeadroomTokens": "integer",
}
WORKER_SETTINGS: dict[str, str] = {
    # the engine
    "device": "string",
    "seed": "integer",
    "kvCacheBytes": "integer",
    "maxGroupBlocks": "integer",
    "kvReuse": "boolean",
    "maxNumBatchedTokens": "integer",
    "maxNumSeqs": "integer",
    "maxModelLen": "integer",
    "blockingSwapInMaxBlocks": "integer",
    "blockingSwapInMaxBatch": "integer",
    "numComputeThreads": "integer",
    # the service
    "livenessTimeoutS": "number",
    "progressIntervalMs": "number",
    # a simulated engine (no model): scale tests of the control plane
    "simulate": "boolean",
    "simulatedStepMs": "number",
    "simulatedKvTokens": "integer",
    "simulatedHostKvTokens": "integer",
    "simulatedKvBytesPerToken": "integer",
    "simulatedCopyGbPerS": "number",
    "simulatedVocabSize": "integer",
    "simulatedAnswerTokens": "integer",
}
# Settings the operator sets from fields of their own (or from the cluster's wiring), by the
# services' snake_case names: not allowed in `settings`.
OWNED_ELSEWHERE = frozenset({
    "listen", "workers", "kvstore_addr", "policy", "tick_ms", "tenants_file",
    "vtc_preempt_threshold", "trace_pattern", "trace_update_probability", "trace_seed",
    "max_queued_requests", "max_queued_per_tenant", "unroutable_timeout_s",
    "allow_anonymous_admin", "model", "load_format", "dtype", "mode", "block_size",
    "gpu_memory_fraction", "host_kv_bytes", "worker_id", "advertise_address",
    "drain_timeout_s", "metrics_port", "tls_cert", "tls_key", "tls_client_ca", "tls_ca",
    "cluster_token", "log_level",
})


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def parse_settings(reader: FieldReader, allowed: dict[str, str]) -> dict[str, Any]:
    """The `settings` object of a component: {camelCase name: value}, each type-checked and
    non-negative; unknown names are problems (the message lists the known ones)."""
    if not reader.has("settings"):
        return {}
    settings = reader.sub("settings", tuple(allowed))
    values: dict[str, Any] = {}
    for name, kind in allowed.items():
        value = settings.get(name, kind, low=0 if kind in ("integer", "number") else None)
        if value is None:
            continue
        if kind == "number" and not math.isfinite(value):
            settings.problems.append(f"{settings.path}.{name} must be finite")
            continue
        values[name] = value
    return values


def settings_args(values: dict[str, Any]) -> list[str]:
    """The flags of parsed settings, in name order."""
    args = []
    for name, value in sorted(values.items()):
        flag = snake_case(name).replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args.append(f"--{flag}={value}")
    return args
