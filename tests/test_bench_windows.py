"""The FeatureWindows benchmark in a CI-sized form: it runs and prints the rows it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_windows_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_windows.py"), "--songs", "3", "--workers", "0,1",
                           "--batches", "2", "--batch-size", "4"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("Zarr", "HDF5"))]
    assert [row[:3] for row in rows] == [["Zarr", "0", "87"], ["Zarr", "1", "87"], ["HDF5", "0", "87"], ["HDF5", "1", "87"]]
    for row in rows:
        assert float(row[5]) > 0 and float(row[6]) > 0 and row[7] == "MiB"  # windows/s, peak RSS
    assert "madmom (4, 100)" in done.stdout and "openl3 (4, 100, 512)" in done.stdout
