"""The end-to-end pipeline benchmark in its CI-sized form: it runs, and its table holds what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .helpers import bf16_cpu_missing

ROOT = Path(__file__).resolve().parents[1]


def test_bench_pipeline_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_pipeline.py"), "--smoke",
                           "--models", "crepe,madmom"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "2 clips" in lines[0] and "GEMM" in lines[0]
    rows = {line[:34].strip(): line[34:].split() for line in lines if line.startswith("(")}
    expected = ["(a) classic, fp32", "(b) fstore extract, default"]
    if bf16_cpu_missing() is None:
        expected += ["(c) fstore extract, bf16", "(d) bf16, --workers auto"]
    else:  # fstore refuses bf16 on this CPU: the bench says so instead of timing it
        assert "bf16 n/a" in lines[0] and any(line.startswith("note: cases (c) and (d) not run") for line in lines)
    assert list(rows) == expected
    for cells in rows.values():
        per_clip, total, overhead = (float(c) for c in cells[:3])
        crepe, madmom = float(cells[5]), float(cells[6])
        assert per_clip > 0 and 0 < crepe + madmom <= total + 0.015 + 1e-9  # three cells rounded to 0.01
        # the cells are printed to 2 decimals: allow for that rounding in all three of them
        rounding = 0.005 + 0.005 / total + per_clip * 0.005 / total**2
        assert abs(overhead - per_clip / total) <= rounding + 1e-9
        assert float(cells[4]) > 50  # peak RSS in MiB: a Python process with torch loaded
    assert rows["(a) classic, fp32"][3] == "1.00x"
