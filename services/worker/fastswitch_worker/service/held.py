"""What this worker holds for the cluster: every request a frontend staged or the scheduler
admitted, whose frontend owns it, and how far it got.

Requests belong to the frontends that staged them, not to the scheduler's session: a scheduler
that restarts finds them in the worker's hello (`HeldRequest`) and adopts them, so requests in
flight survive it. Mutated on the asyncio loop only.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastswitch.v1 import common_pb2, worker_pb2


@dataclass
class Held:
    request_id: str
    frontend_id: str  # "" until the stage arrives (an admit may come first)
    stage: worker_pb2.StageCommand | None = None
    is_admitted: bool = False  # the scheduler said run it
    is_in_engine: bool = False  # handed to the engine (admitted and staged)
    state: int = common_pb2.REQUEST_STATE_WAITING
    num_generated_tokens: int = 0

    @property
    def is_runnable(self) -> bool:
        """Admitted and staged, not yet handed to the engine."""
        return self.is_admitted and self.stage is not None and not self.is_in_engine

    def report(self) -> worker_pb2.HeldRequest:
        return worker_pb2.HeldRequest(
            request_id=self.request_id, is_admitted=self.is_admitted, state=self.state,
            num_generated_tokens=self.num_generated_tokens, frontend_id=self.frontend_id)


class HeldRequests:
    def __init__(self) -> None:
        self._by_id: dict[str, Held] = {}

    def get(self, request_id: str) -> Held | None:
        return self._by_id.get(request_id)

    def get_or_add(self, request_id: str) -> Held:
        held = self._by_id.get(request_id)
        if held is None:
            held = self._by_id[request_id] = Held(request_id, frontend_id="")
        return held

    def pop(self, request_id: str) -> Held | None:
        return self._by_id.pop(request_id, None)

    def of_frontend(self, frontend_id: str) -> list[Held]:
        return [h for h in self._by_id.values() if h.frontend_id == frontend_id]

    def in_engine(self) -> list[Held]:
        return [h for h in self._by_id.values() if h.is_in_engine]

    def values(self) -> list[Held]:
        return list(self._by_id.values())

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)
