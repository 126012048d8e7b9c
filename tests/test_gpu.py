"""A whole `fstore extract` run on a CUDA device (songs of a task batched into shared network calls, CPU-only
models beside it) stores what the same run on the CPU stores: in fp32 within each model's parity tolerance,
in bf16 within the bounds of the models' GPU-vs-CPU tests. Needs a CUDA device: ``pytest -m gpu``.

Weights: CREPE tiny from its package; OpenL3 and MERT (tiny architecture) random-valued in their official
formats, since theirs cannot be downloaded everywhere; madmom joins when it is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import featurestore as fs
from featurestore.agreement import Tolerance, compare
from featurestore.extractors import registry

from .conftest import requires_gpu
from .helpers import fstore, output, write_official_layout, write_snapshot

pytestmark = [pytest.mark.gpu, requires_gpu]

#: clip lengths (s): different lengths, so the batched task holds songs of unequal frame counts
SECONDS = (2.0, 3.5, 5.0)


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory) -> tuple[Path, list[str]]:
    """A folder of clips, and the model options every run of this module shares."""
    import soundfile as sf

    from featurestore.testing import test_signal

    root = tmp_path_factory.mktemp("gpu")
    clips = root / "clips"
    clips.mkdir()
    for i, seconds in enumerate(SECONDS):
        sf.write(clips / f"clip{i}.wav", test_signal(int(44100 * seconds), 44100, seed=i), 44100)
    models = ["openl3", "crepe", "mert"] + (["madmom"] if importlib.util.find_spec("madmom") else [])
    options = ["--models", ",".join(models), "--crepe-capacity", "tiny",
               "--openl3-weights", write_official_layout(root / "openl3_random.h5"),
               "--mert-model", write_snapshot(root / "mert_tiny")]
    return clips, [str(o) for o in options]


def extract(run_inputs: tuple[Path, list[str]], store: Path, device: str, precision: str) -> None:
    clips, options = run_inputs
    result = fstore("extract", clips, "--store", store, *options, "--device", device, "--precision", precision)
    assert result.exit_code == 0, output(result)


@pytest.fixture(scope="module")
def cpu_store(run_inputs, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("cpu") / "cpu.zarr"
    extract(run_inputs, store, "cpu", "fp32")
    return store


def bf16_bound(group: str, stored: np.ndarray) -> Tolerance:
    """The bf16 GPU-vs-CPU bounds of each model's own test (random OpenL3 and MERT weights are less
    well conditioned than the real ones, whose accuracy gates are tighter)."""
    if group == "openl3":
        return Tolerance(min_cosine=0.999)
    if group == "mert":
        return Tolerance(max_abs=0.1 * float(np.abs(stored).max()))
    return registry.get(group)(precision="bf16").tolerance()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_gpu_run_stores_what_the_cpu_run_stores(run_inputs, cpu_store, tmp_path, precision) -> None:
    extract(run_inputs, tmp_path / "gpu.zarr", "cuda", precision)
    cpu, gpu = fs.open_store(cpu_store), fs.open_store(tmp_path / "gpu.zarr")
    assert gpu.models() == cpu.models() and len(cpu.models()) >= 3
    for group in cpu.models():
        assert gpu.songs(group) == cpu.songs(group) == [f"clip{i}" for i in range(len(SECONDS))]
        ext = registry.get(group)(**({"precision": "fp32"} if group != "madmom" else {}))
        for song in cpu.songs(group):
            want, got = cpu.load(song, group), gpu.load(song, group)
            assert got.shape == want.shape, f"{group}/{song}"
            tolerance = ext.tolerance() if precision == "fp32" or group == "madmom" else bf16_bound(group, want.values)
            agreement = compare(want.values, got.values.astype(np.float32), tolerance, want.dims,
                                ext.feature_names, want["time"].values)
            print(f"{precision} {group}/{song}: max |diff| {agreement.max_abs:.2e}, min cosine {agreement.min_cosine:.6f}")
            assert agreement.ok, f"{precision} {group}/{song}: {'; '.join(agreement.failures)}"
