"""Worker targets resolve to addresses; a name may stand for many workers."""

from __future__ import annotations

import pytest

from fastswitch_scheduler.discovery import resolve_targets, split_target


async def test_an_ip_target_resolves_to_itself_and_localhost_to_loopback() -> None:
    assert await resolve_targets(("127.0.0.1:50061",)) == {"127.0.0.1:50061": "127.0.0.1"}
    assert (await resolve_targets(("localhost:7",)))["127.0.0.1:7"] == "localhost"


async def test_an_unresolvable_target_names_no_worker() -> None:
    assert await resolve_targets(("no-such-host.invalid:50061",)) == {}


def test_a_target_without_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_target("workers.default.svc")
