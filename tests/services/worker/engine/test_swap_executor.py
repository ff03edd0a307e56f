"""SwapExecutor over a real Swapper on CPU pools: it runs copies and reports what finished, as
plain values, without applying anything."""

from __future__ import annotations

import threading

import torch

from fastswitch_worker.engine.extents import CopyExtent
from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import SwapCounters
from fastswitch_worker.engine.swap_executor import SwapExecutor
from fastswitch_worker.engine.swapper import Swapper
from fastswitch_worker.engine.switches import CopyKind, FinishedCopy


def executor() -> tuple[SwapExecutor, Swapper]:
    # [num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim]
    gpu_kv = torch.arange(8 * 2 * 2 * 4 * 2, dtype=torch.float32).reshape(8, 2, 2, 4, 1, 2)
    host_kv = torch.zeros_like(gpu_kv)
    swapper = Swapper(gpu_kv, host_kv, is_async=True, is_per_layer_copies=False)
    return SwapExecutor(swapper, SwapCounters()), swapper


def out_plan(request_id: str, src: int, dst: int) -> SwapPlan:
    return SwapPlan(request_id, SwapDirection.OUT, (CopyExtent(src, dst, 2),), 8)


def test_finished_copies_are_reported_once_in_submission_order() -> None:
    copies, swapper = executor()
    first, second = out_plan("a", 0, 0), out_plan("b", 2, 2)
    copies.submit(first, CopyKind.SWAP_OUT)
    copies.submit(second, CopyKind.RETIRE)
    assert copies.poll(wait=True) == [FinishedCopy(first, CopyKind.SWAP_OUT),
                                      FinishedCopy(second, CopyKind.RETIRE)]
    assert torch.equal(swapper.host_kv[:4], swapper.gpu_kv[:4])
    assert copies.poll(wait=False) == [] and copies.num_inflight == 0
    swapper.close()


def test_polling_never_waits_for_a_copy_in_flight_and_a_cancel_is_reported_with_it() -> None:
    copies, swapper = executor()
    gate = threading.Event()
    copy = swapper._copy
    swapper._copy = lambda plan: (gate.wait(), copy(plan))  # hold the copy in flight
    plan = out_plan("a", 0, 0)
    copies.submit(plan, CopyKind.SWAP_OUT)
    copies.cancel_swap_out("a")
    assert copies.poll(wait=False) == [] and copies.num_inflight == 1
    gate.set()
    assert copies.poll(wait=True) == [FinishedCopy(plan, CopyKind.SWAP_OUT, is_cancelled=True)]
    swapper.close()


def test_a_failed_copy_is_reported_with_its_error() -> None:
    copies, swapper = executor()
    copies.submit(out_plan("a", 0, 7), CopyKind.SWAP_OUT)  # host blocks 7-8: past the end
    [finished] = copies.poll(wait=True)
    assert finished.error is not None and copies.num_inflight == 0
    swapper.close()
