"""The engine's errors, torch-free, so that code handling them (the engine loop, the worker
service) does not import torch for them: the simulated engine raises them too."""

from __future__ import annotations


class InvalidRequestError(ValueError):
    """The request cannot be served as given (empty or oversized prompt, duplicate id...)."""


class EngineInconsistentError(RuntimeError):
    """After a failed step the engine's bookkeeping is broken: it cannot serve any more.
    `request_ids` are the failed step's requests, as fail_step() would have returned them."""

    def __init__(self, message: str, request_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.request_ids = request_ids
