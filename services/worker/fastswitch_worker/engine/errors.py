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


def check_new_request(request_id: str, prompt_token_ids: list[int], max_tokens: int, *,
                      live_ids, vocab_size: int, max_model_len: int,
                      kv_capacity_tokens: int) -> None:
    """Raises InvalidRequestError for a request an engine cannot take (both engines check
    alike): a duplicate id, an empty prompt, token ids outside the vocabulary, or a prompt +
    max_tokens beyond the context or beyond the worker's whole KV cache."""
    if request_id in live_ids:
        raise InvalidRequestError(f"request id {request_id!r} is already in use")
    if not prompt_token_ids:
        raise InvalidRequestError("prompt is empty")
    if any(not 0 <= t < vocab_size for t in prompt_token_ids):
        raise InvalidRequestError(f"prompt token ids must be in [0, {vocab_size})")
    num_tokens = len(prompt_token_ids) + max_tokens
    if num_tokens > max_model_len:
        raise InvalidRequestError(
            f"prompt ({len(prompt_token_ids)} tokens) + max_tokens ({max_tokens}) "
            f"exceeds the model's context of {max_model_len} tokens")
    if num_tokens > kv_capacity_tokens:
        raise InvalidRequestError(
            f"prompt + max_tokens ({num_tokens} tokens) exceeds this worker's KV cache "
            f"capacity of {kv_capacity_tokens} tokens")
