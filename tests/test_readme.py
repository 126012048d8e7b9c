"""The README's Python example runs against a store made from audio_files/ (docs that cannot rot)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .helpers import fstore

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "audio_files", tmp_path / "audio_files")
    monkeypatch.chdir(tmp_path)
    result = fstore("extract", "--models", "madmom,crepe", "--crepe-capacity", "tiny")
    assert result.exit_code == 0, result.output
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "[0.   0.01 0.02] 0.01" in printed and "Dimensions" in printed
