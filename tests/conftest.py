"""Shared test helpers: where ../shared is, and skip markers that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
