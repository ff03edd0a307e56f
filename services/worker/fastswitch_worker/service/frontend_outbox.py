"""Where a frontend's tokens wait for its stream: one outbox per frontend, kept across the
frontend's reconnects, so a stream that breaks and comes back loses nothing.

A worker never blocks on a frontend: steps are queued without waiting, a frontend whose outbox
grows past MAX_QUEUED_STEPS (it stopped reading) or that stays away FRONTEND_GRACE_S is given
up, and its requests are aborted. Mutated on the asyncio loop only.
"""

from __future__ import annotations

import asyncio
import time

from fastswitch.v1 import worker_pb2

# A frontend that reconnects within this long keeps its requests (a restarted connection, a
# brief partition); one gone longer has lost its clients' streams.
FRONTEND_GRACE_S = 10.0
# Steps queued for a frontend that does not read them; beyond this it counts as gone (at 50
# steps/s, over a minute of output).
MAX_QUEUED_STEPS = 4096


class FrontendOutbox:
    def __init__(self, frontend_id: str) -> None:
        self.frontend_id = frontend_id
        self.queue: asyncio.Queue[worker_pb2.StreamResponse | None] = asyncio.Queue()
        self.num_streams = 0  # streams attached now (0 or 1; a reconnect replaces the old one)
        self.detached_since_s: float | None = time.monotonic()
        self.is_overflowing = False

    def attach(self) -> asyncio.Queue:
        """Mutates: a new stream takes the outbox; the previous stream (if any) is ended by a
        None in its queue, and what it had not sent moves to the new queue."""
        old, self.queue = self.queue, asyncio.Queue()
        while not old.empty():
            item = old.get_nowait()
            if item is not None:
                self.queue.put_nowait(item)
        if self.num_streams:
            old.put_nowait(None)
        self.num_streams = 1
        self.detached_since_s = None
        return self.queue

    def detach(self, queue: asyncio.Queue) -> None:
        """Mutates: the stream reading `queue` ended; a stale stream changes nothing."""
        if queue is self.queue:
            self.num_streams = 0
            self.detached_since_s = time.monotonic()

    def put(self, response: worker_pb2.StreamResponse) -> None:
        if self.queue.qsize() >= MAX_QUEUED_STEPS:
            self.is_overflowing = True
            return
        self.queue.put_nowait(response)

    def is_gone(self, now_s: float) -> bool:
        return self.is_overflowing or (self.detached_since_s is not None
                                       and now_s - self.detached_since_s > FRONTEND_GRACE_S)

    def close(self) -> None:
        """Mutates: ends the attached stream, if any."""
        self.queue.put_nowait(None)
