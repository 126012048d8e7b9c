"""Shared test helpers: where ../shared is, and skip markers that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the conformance suites' asserts say what differed, as the tests' own do
pytest.register_assert_rewrite("featurestore.testing")

#: the project's shared folder (parity fixtures), beside the checkout; FSTORE_SHARED overrides
SHARED = Path(os.environ.get("FSTORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
HAS_SHARED = (SHARED / "parity").is_dir()

requires_shared = pytest.mark.skipif(
    not HAS_SHARED, reason=f"parity fixtures not found: {SHARED / 'parity'} is absent (set FSTORE_SHARED)"
)


def shared_path(*parts: str) -> Path:
    return SHARED.joinpath(*parts)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_gpu = pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")


@pytest.fixture
def fake_models():
    """Register the test extractors of tests/fakes.py (``fake``, ``slow``, ...) for one test."""
    from featurestore.extractors import registry

    from .fakes import FAKES

    for name, target in FAKES.items():
        registry.register(name, target)
    yield list(FAKES)
    registry.reset()


def write_wav(path: Path, seconds: float, rate: int = 22050, channels: int = 1, freq: float = 440.0,
              subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    """A sine test file (mono or several channels) written with soundfile."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    data = np.stack([wave * (1 + 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype("float32"), rate, subtype=subtype, format=fmt)
    return path
