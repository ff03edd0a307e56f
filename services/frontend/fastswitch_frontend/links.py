"""A frontend's long-lived bidirectional streams (to the scheduler, to each worker), kept open
across failures: each reconnects with a short delay and begins again with its opening messages
(a hello, and whatever the other side must hear again). Mutated on the asyncio loop only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from fastswitch import transport

log = logging.getLogger("fastswitch.frontend.link")
RECONNECT_DELAY_S = 0.5

# (channel, outgoing messages, call metadata: the cluster credential) -> the bidi call
OpenCall = Callable[[grpc.aio.Channel, AsyncIterator, tuple], grpc.aio.StreamStreamCall]


class Link:
    def __init__(self, name: str, address: str, security: transport.TransportSecurity, *,
                 open_call: OpenCall, opening: Callable[[], list],
                 on_message: Callable[[object], None],
                 on_state: Callable[[Link], None] = lambda link: None,
                 server_name: str = "") -> None:
        self.name = name
        self.address = address
        self.server_name = server_name
        self.security = security
        self.is_up = False
        self.down_since_s = time.monotonic()
        self._open_call = open_call
        self._opening = opening
        self._on_message = on_message
        self._on_state = on_state
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.name}")

    async def stop(self) -> None:
        if self._task is None:
            return
        while not self._task.done():  # a cancellation a library swallows is repeated
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)

    def send(self, msg) -> None:
        """Queued for the stream while it is up; dropped while it is down (the opening
        messages of the next stream say again what matters)."""
        if self.is_up:
            self._outbox.put_nowait(msg)

    async def _messages(self, outbox: asyncio.Queue) -> AsyncIterator:
        while (msg := await outbox.get()) is not None:
            yield msg

    async def _run(self) -> None:
        while True:
            try:
                async with transport.channel(self.address, self.security, inject_token=False,
                                             server_name=self.server_name) as channel:
                    await self._stream(channel)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if self.is_up:
                    log.warning("stream lost", extra={"link": self.name, "code": exc.code().name,
                                                      "details": (exc.details() or "")[:200]})
            except Exception:
                log.exception("stream failed", extra={"link": self.name})
            finally:
                self._set_down()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        outbox = self._outbox = asyncio.Queue()
        call = self._open_call(channel, self._messages(outbox),
                               transport.stream_metadata(self.security))
        for msg in self._opening():  # taken and queued with no await between: nothing is missed
            outbox.put_nowait(msg)
        self.is_up = True
        self._on_state(self)
        async for msg in call:
            self._on_message(msg)

    def _set_down(self) -> None:
        self._outbox.put_nowait(None)
        if self.is_up:
            self.is_up = False
            self.down_since_s = time.monotonic()
            self._on_state(self)
