"""Device and precision choices shared by the torch extractors."""

from __future__ import annotations

import pytest

from featurestore.devices import exact_fp32_on_cuda, resolve_device, resolve_precision

from .helpers import fstore


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_cuda():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", "cpu")


def test_devices_are_checked(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu"
    for available, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert resolve_device("auto") == expected
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda:0")  # torch.cuda.is_available() is False here
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


def test_auto_workers_share_cores_and_memory(monkeypatch):
    from featurestore import devices
    from featurestore.devices import WORKER_MEMORY_BYTES, auto_workers

    plenty = 1 << 40
    assert auto_workers("cuda", cores=16, memory=plenty) == 0  # one process owns the GPU
    assert auto_workers("cpu", cores=1, memory=plenty) == 0  # one core: no pool for one process
    assert auto_workers("cpu", cores=2, memory=plenty) == 2  # one process per core
    assert auto_workers("cpu", cores=16, memory=plenty) == 16
    assert auto_workers("cpu", cores=64, memory=5 * WORKER_MEMORY_BYTES) == 5  # memory bounds it
    assert auto_workers("cpu", cores=64, memory=WORKER_MEMORY_BYTES) == 0
    monkeypatch.setattr(devices, "available_memory", lambda: None)
    assert auto_workers("cpu", cores=16) == 16  # memory unknown: cores decide
    assert auto_workers("cpu", songs=3, cores=16, memory=plenty) == 3  # no idle process
    assert auto_workers("cpu", songs=1, cores=16, memory=plenty) == 0  # one song: this process


def test_workers_option_takes_counts_and_auto(tmp_path, monkeypatch):
    from featurestore import devices

    from .conftest import write_wav

    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    bad = fstore("extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                              "--models", "madmom", "--workers", "many")
    assert bad.exit_code == 2 and "auto" in bad.output
    ok = fstore("extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                             "--models", "madmom", "--workers", "auto")
    assert ok.exit_code == 0, ok.output
    assert "--workers auto: this process" in ok.output  # one song: no pool
    write_wav(tmp_path / "audio" / "b.wav", 0.5)
    write_wav(tmp_path / "audio" / "c.wav", 0.5)
    monkeypatch.setattr(devices, "usable_cores", lambda: 2)
    monkeypatch.setattr(devices, "available_memory", lambda: 1 << 40)
    planned = fstore("extract", str(tmp_path / "audio"), "--store", str(tmp_path / "s.zarr"),
                                  "--models", "madmom", "--workers", "auto", "--overwrite", "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "--workers auto: 2 processes, 1 thread each, on cpu" in planned.output
