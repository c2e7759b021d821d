"""Device choice, autocast and thread helpers used by every engine."""

from __future__ import annotations

import pytest
import torch

from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.device import (
    configure_cpu_threads,
    encoder_autocast,
    release_memory,
    resolve_device,
)

HAS_GPU = torch.cuda.is_available() or torch.backends.mps.is_available()


def test_cpu_is_always_available() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu() -> None:
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("choice", ["gpu", "cuda", "cuda:0", "mps"])
def test_gpu_choice_without_gpu_is_a_clear_error(choice: str) -> None:
    with pytest.raises(EngineError, match=f"device '{choice}'") as info:
        resolve_device(choice)
    assert "\n" not in str(info.value)


def test_unknown_device_lists_choices() -> None:
    with pytest.raises(EngineError, match="auto, cpu, cuda, gpu, mps"):
        resolve_device("tpu")


def test_autocast_leaves_cpu_in_float32() -> None:
    layer = torch.nn.Linear(4, 4)
    with encoder_autocast(torch.device("cpu"), model_supports_bf16=True):
        out = layer(torch.ones(1, 4))
    assert out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(),
                    reason="needs a CUDA GPU with bf16")
def test_autocast_runs_encoders_in_bf16_on_cuda() -> None:
    layer = torch.nn.Linear(4, 4).cuda()
    device = torch.device("cuda")
    with encoder_autocast(device, model_supports_bf16=True):
        assert layer(torch.ones(1, 4, device=device)).dtype == torch.bfloat16
    with encoder_autocast(device, model_supports_bf16=False):
        assert layer(torch.ones(1, 4, device=device)).dtype == torch.float32


def test_thread_count_is_clamped_and_restored() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1
        assert configure_cpu_threads(10_000) >= 1
        assert configure_cpu_threads(0) == 1
    finally:
        torch.set_num_threads(before)
    release_memory(torch.device("cpu"))  # must be harmless without a GPU
