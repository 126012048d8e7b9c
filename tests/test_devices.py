"""Device and precision choices shared by the torch extractors."""

from __future__ import annotations

import pytest

from featurestore.devices import exact_fp32_on_cuda, resolve_device, resolve_precision


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_cuda():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", "cpu")


def test_devices_are_checked():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_fp32_on_cuda_turns_tf32_off():
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = True  # torch's default for convolutions, and a user's choice
    try:
        exact_fp32_on_cuda()
        assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
