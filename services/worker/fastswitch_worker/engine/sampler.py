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
        """Mutates the generators. logits: [num_requests, vocab], on the model's device.

        Returns (token_id, logprob or None) per row; logprob is from the raw distribution.
        Greedy rows and unseeded temperature-only rows are sampled together on the logits'
        device (one host transfer per step); seeded or top-k/top-p rows go through their own
        generators on the host, row by row.
        """
        logits = logits.float()  # [num_requests, vocab]
        vocab_size = logits.shape[-1]
        token_ids = logits.argmax(dim=-1)  # [num_requests], greedy unless replaced
        batched_rows = [row for row, p in enumerate(params) if _is_batchable(p, vocab_size)]
        if batched_rows:
            rows = torch.tensor(batched_rows, dtype=torch.int64, device=logits.device)
            temperatures = torch.tensor([params[row].temperature for row in batched_rows],
                                        dtype=torch.float32, device=logits.device)
            token_ids[rows] = sample_with_temperatures(logits[rows], temperatures,
                                                       token_ids[rows])
        host_rows = [row for row, p in enumerate(params)
                     if not p.is_greedy and not _is_batchable(p, vocab_size)]
        if host_rows:
            host_logits = logits[host_rows].cpu()  # [len(host_rows), vocab]
            for host_row, row in enumerate(host_rows):
                probs = probabilities(host_logits[host_row], params[row])
                if probs is not None:  # else keep the greedy token
                    generator = self._generator(request_ids[row], params[row])
                    token_ids[row] = int(torch.multinomial(probs, 1, generator=generator))
        logprobs: list[float] | None = None
        if any(p.logprobs for p in params):
            chosen = torch.log_softmax(logits, dim=-1).gather(1, token_ids[:, None])
            logprobs = chosen.squeeze(1).tolist()
        token_list = token_ids.tolist()
        return [
            (token_id, logprobs[row] if p.logprobs and logprobs is not None else None)
            for row, (token_id, p) in enumerate(zip(token_list, params, strict=True))
        ]

    def _generator(self, request_id: str, p: SamplingParams) -> torch.Generator | None:
        if p.seed is None:
            return None
        generator = self._generators.get(request_id)
        if generator is None:
            generator = torch.Generator().manual_seed(p.seed)
            self._generators[request_id] = generator
        return generator


def _is_batchable(p: SamplingParams, vocab_size: int) -> bool:
    """Temperature-only sampling without a seed: drawn for the whole batch at once."""
    return (not p.is_greedy and p.seed is None and p.top_p >= 1.0
            and not 0 < p.top_k < vocab_size)


def sample_with_temperatures(logits: torch.Tensor, temperatures: torch.Tensor,
                             greedy_ids: torch.Tensor) -> torch.Tensor:
    """Pure (draws from the global generator of logits' device): one token per row of
    softmax(logits / temperature), as [n] int64; rows whose distribution is not finite keep
    greedy_ids. logits: [n, vocab] float32; temperatures: [n] >= MIN_SAMPLING_TEMPERATURE.

    Exponential race: argmax(p / E) with E ~ Exp(1) i.i.d. picks index i with probability p_i,
    without a cumulative sum or a host round trip.
    """
    # Every scaled logit <= 0 and each row's maximum exactly 0 (see the module docstring).
    scaled = (logits - logits.max(dim=-1, keepdim=True).values) / temperatures[:, None]
    probs = torch.softmax(scaled, dim=-1)
    race = torch.empty_like(probs).exponential_().clamp_min_(torch.finfo(probs.dtype).tiny)
    sampled = (probs / race).argmax(dim=-1)
    is_valid = torch.isfinite(probs).all(dim=-1) & (probs.sum(dim=-1) > 0)
    return torch.where(is_valid, sampled, greedy_ids)


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
