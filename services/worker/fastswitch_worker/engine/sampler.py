"""Next-token sampling: greedy, temperature, top-k, top-p; a seeded generator per request."""

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
        """Mutates the generators. logits: [num_requests, vocab] float32.

        Returns (token_id, logprob or None) per row; logprob is from the raw distribution.
        """
        logits = logits.float().cpu()
        logprobs = torch.log_softmax(logits, dim=-1)
        token_ids = logits.argmax(dim=-1).tolist()
        for row, (request_id, p) in enumerate(zip(request_ids, params, strict=True)):
            if not p.is_greedy:
                token_ids[row] = self._draw(logits[row], p, self._generator(request_id, p))
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

    @staticmethod
    def _draw(row_logits: torch.Tensor, p: SamplingParams,
              generator: torch.Generator | None) -> int:
        scaled = row_logits / p.temperature  # [vocab]
        if 0 < p.top_k < scaled.numel():
            kth_value = torch.topk(scaled, p.top_k).values[-1]
            scaled = scaled.masked_fill(scaled < kth_value, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always the top token).
            mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
            sorted_probs[mass_before >= p.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=generator))
