"""The similar-songs benchmark in a CI-sized form: it runs and prints the row it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_similar_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_similar.py"), "--sizes", "3000",
                           "--dims", "16", "--backend", "none", "--pool-songs", "3"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    (row,) = [line.split() for line in lines if line.startswith("    3000")]
    assert row[:2] == ["3000", "16"] and [row[3], row[5], row[7], row[9]] == ["ms", "ms", "ms", "MiB"]
    assert 0 < float(row[2]) < 1e4 and float(row[10]) < 1e-5  # a time, and scores within float32 of float64
    assert any(line.startswith("pooling (StoreReader.pooled, mean) of 3 songs") for line in lines)
