"""Helpers the test modules share (no test module imports another)."""

from __future__ import annotations

import pytest


def bf16_cpu_missing() -> str | None:
    """Why this CPU cannot run fstore's bf16 paths (None when it can): fstore refuses ``--precision bf16``
    on a CPU with neither AVX512-BF16 nor AMX; there oneDNN's bf16 convolutions raise (they need AVX-512
    BW/VL/DQ or AVX-NE-CONVERT) and a large bf16 GEMM takes minutes in a fallback."""
    from featurestore.devices import cpu_flags

    flags = cpu_flags()
    if flags is None:  # not Linux: nothing to tell, let the test run
        return None
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has neither avx512_bf16 nor amx_bf16 (fstore refuses --precision bf16 on it)"
    return None


requires_bf16_cpu = pytest.mark.skipif(bf16_cpu_missing() is not None, reason=str(bf16_cpu_missing()))


def fstore(*args: object, **kwargs: object):
    """``fstore ARGS...`` run in this process through Typer's test runner (exceptions propagate);
    ``kwargs`` go to :meth:`CliRunner.invoke` (``input=...``, ``env=...``)."""
    from typer.testing import CliRunner

    from featurestore.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def output(result) -> str:
    """A CLI result's output with rich's line wrapping undone (messages are matched as one line)."""
    return " ".join(result.output.split())
