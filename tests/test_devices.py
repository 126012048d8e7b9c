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


def test_auto_workers_share_cores_and_memory():
    from featurestore.devices import WORKER_MEMORY_BYTES, auto_workers

    plenty = 1 << 40
    assert auto_workers("cuda", cores=16, memory=plenty) == 0  # one process owns the GPU
    assert auto_workers("cpu", cores=2, memory=plenty) == 0  # a laptop: this process, all cores
    assert auto_workers("cpu", cores=7, memory=plenty) == 0  # one 4-thread share: no pool for one process
    assert auto_workers("cpu", cores=16, memory=plenty) == 4
    assert auto_workers("cpu", cores=64, memory=5 * WORKER_MEMORY_BYTES) == 5  # memory bounds it
    assert auto_workers("cpu", cores=64, memory=WORKER_MEMORY_BYTES) == 0
    assert auto_workers("cpu", cores=16, memory=None) == 4  # memory unknown: cores decide


def test_workers_option_takes_counts_and_auto(tmp_path):
    from typer.testing import CliRunner

    from featurestore.cli import app

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    runner = CliRunner()
    bad = runner.invoke(app, ["extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                              "--models", "madmom", "--workers", "many"])
    assert bad.exit_code == 2 and "auto" in bad.output
    ok = runner.invoke(app, ["extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                             "--models", "madmom", "--workers", "auto"])
    assert ok.exit_code == 0, ok.output
    assert "--workers auto:" in ok.output
