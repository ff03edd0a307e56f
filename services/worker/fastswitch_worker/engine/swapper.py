"""Moves KV between the GPU pool and the host pool. The only module that issues copies.

Asynchronous mode (FastSwitch): one copy thread per direction, each with its own CUDA stream
on GPUs; jobs run in submission order; a job records its completion so the engine polls it
without blocking and waits only at the point of use. Device -> host jobs first wait for the
compute stream (the forward pass that produced the K/V). Synchronous mode (baseline) copies on
the calling thread and compute stream before returning, as vLLM v0 does.

Both pools have the block-major layout [num_blocks, num_layers, 2, block_size, kv_heads,
head_dim], so an extent of contiguous blocks is one contiguous range: one copy per extent. The
per-layer mode issues one copy per block x layer x K/V instead (vLLM v0's plan).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import CopyTotals


@dataclass(eq=False)
class CopyJob:
    plan: SwapPlan
    num_bytes: int
    num_copies: int
    _done: threading.Event = field(default_factory=threading.Event)
    _compute_ready: torch.cuda.Event | None = None
    error: BaseException | None = None
    copy_ms: float = 0.0

    def is_done(self) -> bool:
        """Non-blocking completion check."""
        return self._done.is_set()

    def wait_for(self, timeout_s: float | None) -> bool:
        """Block up to timeout_s (None: no limit) for completion; True when done. Does not
        raise; wait() reports a failed copy."""
        return self._done.wait(timeout_s)

    def wait(self) -> None:
        """Block until the copy finished; raises the copy's error if it failed."""
        self._done.wait()
        if self.error is not None:
            raise RuntimeError(f"swap {self.plan.direction.value} of {self.plan.request_id} failed") from self.error


class Swapper:
    """Owns the copy threads and streams. submit() and close() are called by the engine thread."""

    def __init__(self, gpu_kv: torch.Tensor, host_kv: torch.Tensor, *, is_async: bool,
                 is_per_layer_copies: bool) -> None:
        assert gpu_kv.shape[1:] == host_kv.shape[1:], "pools must share the block layout"
        self.gpu_kv = gpu_kv  # [num_gpu_blocks, num_layers, 2, block_size, kv_heads, head_dim]
        self.host_kv = host_kv  # [num_host_blocks, ...same]
        self.is_async = is_async
        self.is_per_layer_copies = is_per_layer_copies
        self.block_bytes = gpu_kv[0].numel() * gpu_kv.element_size()
        self.totals = {SwapDirection.OUT: CopyTotals(), SwapDirection.IN: CopyTotals()}
        self._is_cuda = gpu_kv.is_cuda
        self._queues: dict[SwapDirection, queue.Queue[CopyJob | None]] = {}
        self._threads: list[threading.Thread] = []
        if is_async:
            for direction in SwapDirection:
                self._queues[direction] = queue.Queue()
                thread = threading.Thread(target=self._run_copy_thread, args=(direction,),
                                          name=f"swap-{direction.value}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _new_job(self, plan: SwapPlan) -> CopyJob:
        num_copies = len(plan.extents)
        if self.is_per_layer_copies:
            num_copies = plan.num_blocks * self.gpu_kv.shape[1] * 2
        return CopyJob(plan, plan.num_blocks * self.block_bytes, num_copies)

    def run_now(self, plan: SwapPlan) -> CopyJob:
        """Copy on the calling thread (and the current stream), returning once it completed.
        Used where the data is needed before the next forward pass, and by the baseline."""
        job = self._new_job(plan)
        self._execute(job, stream=None)
        return job

    def submit(self, plan: SwapPlan) -> CopyJob:
        """Start a copy. Async: returns at once; sync: returns after the copy completed."""
        job = self._new_job(plan)
        if self._is_cuda and plan.direction is SwapDirection.OUT:
            # The copy must not read K/V before the forward pass that wrote it finished.
            job._compute_ready = torch.cuda.Event()
            job._compute_ready.record(torch.cuda.current_stream(self.gpu_kv.device))
        if self.is_async:
            self._queues[plan.direction].put(job)
        else:
            self._execute(job, stream=None)
        return job

    def _run_copy_thread(self, direction: SwapDirection) -> None:
        torch.set_num_threads(1)  # one core per copy thread; compute keeps the rest
        stream = torch.cuda.Stream(self.gpu_kv.device) if self._is_cuda else None
        jobs = self._queues[direction]
        while (job := jobs.get()) is not None:
            self._execute(job, stream)

    def _execute(self, job: CopyJob, stream: torch.cuda.Stream | None) -> None:
        start = time.perf_counter()
        try:
            if stream is not None:
                with torch.cuda.stream(stream):
                    if job._compute_ready is not None:
                        stream.wait_event(job._compute_ready)
                    self._copy(job.plan)
                stream.synchronize()
            else:
                self._copy(job.plan)
                if self._is_cuda:
                    torch.cuda.current_stream(self.gpu_kv.device).synchronize()
        except BaseException as exc:  # reported to the engine through the job
            job.error = exc
        job.copy_ms = (time.perf_counter() - start) * 1e3
        self.totals[job.plan.direction].count(job.num_copies, job.num_bytes, job.copy_ms / 1e3)
        job._done.set()

    def _copy(self, plan: SwapPlan) -> None:
        if plan.direction is SwapDirection.OUT:
            src, dst = self.gpu_kv, self.host_kv
        else:
            src, dst = self.host_kv, self.gpu_kv
        non_blocking = self._is_cuda
        if not self.is_per_layer_copies:
            for e in plan.extents:
                dst[e.dst_start : e.dst_start + e.num_blocks].copy_(
                    src[e.src_start : e.src_start + e.num_blocks], non_blocking=non_blocking)
            return
        num_layers = src.shape[1]
        for e in plan.extents:
            for i in range(e.num_blocks):
                for layer in range(num_layers):
                    for kv in (0, 1):
                        dst[e.dst_start + i, layer, kv].copy_(
                            src[e.src_start + i, layer, kv], non_blocking=non_blocking)

    def close(self) -> None:
        """Finish queued jobs and stop the threads."""
        for jobs in self._queues.values():
            jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
