"""Next-token sampling: greedy, temperature, top-k, top-p; a seeded generator per request.

No finite parameters make sampling raise: temperatures below MIN_SAMPLING_TEMPERATURE are
greedy (SamplingParams.is_greedy); otherwise the row is shifted so its maximum is 0 before it is
divided by the temperature, so in float32 every scaled logit is <= 0, exp() cannot overflow and
the top token's weight is exactly 1; the filters always keep the top token; and a row whose
distribution is still not finite (non-finite logits from the model) falls back to greedy.
"""

from __future__ import annotations

import torch

from fastswitch_worker.engine.sequence import SamplingParams


class Sampler:
    """Keeps one torch.Generator per seeded request, so a request's random stream does not
    depend on what else is in the batch or on how often it was preempted."""

    def __init__(self) -> None:
        self._generators: dict[str, torch.Generator] = {}

    def forget(self, request_id: str) -> None:
        """Mutates: drops the request's generator."""
        self._generators.pop(request_id, None)

    def sample(self, logits: torch.Tensor, request_ids: list[str],
               params: list[SamplingParams]) -> list[tuple[int, float | None]]:
        """Mutates the generators. logits: [num_requests, vocab].

        Returns (token_id, logprob or None) per row; logprob is from the raw distribution.
        """
        logits = logits.float().cpu()  # [num_requests, vocab]
        logprobs = torch.log_softmax(logits, dim=-1)
        token_ids = logits.argmax(dim=-1).tolist()
        for row, (request_id, p) in enumerate(zip(request_ids, params, strict=True)):
            if p.is_greedy:
                continue
            probs = probabilities(logits[row], p)
            if probs is not None:  # else keep the greedy token
                generator = self._generator(request_id, p)
                token_ids[row] = int(torch.multinomial(probs, 1, generator=generator))
        return [
            (token_id, float(logprobs[row, token_id]) if p.logprobs else None)
            for row, (token_id, p) in enumerate(zip(token_ids, params, strict=True))
        ]

    def _generator(self, request_id: str, p: SamplingParams) -> torch.Generator | None:
        if p.seed is None:
            return None
        generator = self._generators.get(request_id)
        if generator is None:
            generator = torch.Generator().manual_seed(p.seed)
            self._generators[request_id] = generator
        return generator


def probabilities(row_logits: torch.Tensor, p: SamplingParams) -> torch.Tensor | None:
    """Pure: the distribution a non-greedy row is drawn from (temperature, then top-k, then
    top-p, as transformers' warpers apply them), or None when the logits give no valid one.

    row_logits: [vocab] float32. Returns [vocab] float32, finite, >= 0, summing to 1.
    """
    # [vocab], every value <= 0 and the maximum exactly 0: dividing by any temperature >=
    # MIN_SAMPLING_TEMPERATURE can underflow to -inf but never reach +inf or nan.
    scaled = (row_logits - row_logits.max()) / p.temperature
    if 0 < p.top_k < scaled.numel():
        kth_value = torch.topk(scaled, p.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth_value, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p; the top token always stays.
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        is_dropped = mass_before >= p.top_p
        is_dropped[0] = False
        sorted_probs[is_dropped] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    total = float(probs.sum())
    if not bool(torch.isfinite(probs).all()) or not total > 0:
        return None
    return probs / total
