"""Backend choice by device, and FlashInfer's page table built from our metadata (pure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastswitch_worker.engine.attention_backends import TorchBackend, select_backend
from fastswitch_worker.engine.attention_flashinfer import page_table

SHAPE = dict(block_size=16, num_heads=8, num_kv_heads=2, head_dim=64)


def test_cpu_gets_the_reference_backend() -> None:
    assert isinstance(select_backend("auto", torch.device("cpu"), **SHAPE), TorchBackend)
    assert isinstance(select_backend("torch", torch.device("cpu"), **SHAPE), TorchBackend)


@pytest.mark.parametrize("name", ["triton", "flashinfer"])
def test_a_cuda_backend_on_cpu_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        select_backend(name, torch.device("cpu"), **SHAPE)


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown attention backend 'fast'"):
        select_backend("fast", torch.device("cpu"), **SHAPE)


def test_page_table_is_flashinfers_csr_of_the_used_blocks() -> None:
    tables = np.array([[7, 2, 9, 0], [4, 0, 0, 0], [1, 3, 5, 6]])
    indptr, indices, last_page_len = page_table(tables, np.array([33, 16, 49]), block_size=16)
    assert indptr.tolist() == [0, 3, 4, 8]
    assert indices.tolist() == [7, 2, 9, 4, 1, 3, 5, 6]
    assert last_page_len.tolist() == [1, 16, 1]
    assert indptr.dtype == indices.dtype == last_page_len.dtype == np.int32
