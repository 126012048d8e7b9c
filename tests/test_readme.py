"""The README's code runs or is the code it shows (docs that cannot rot): the Python API example runs
against a store made from audio_files/, and "Adding a model" shows the example plugin's own code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .helpers import fstore

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLUGIN = ROOT / "examples" / "fstore-rms"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of level 1 or 2."""
    start = README.index(f"\n{heading}\n")
    end = re.compile(r"\n##? ").search(README, start + 1)
    return README[start : end.start() if end else len(README)]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "audio_files", tmp_path / "audio_files")
    monkeypatch.chdir(tmp_path)
    result = fstore("extract", "--models", "madmom,crepe", "--crepe-capacity", "tiny")
    assert result.exit_code == 0, result.output
    (example,) = _blocks(README.replace(_section("### Adding a model"), ""), "python")
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "[0.   0.01 0.02] 0.01" in printed and "Dimensions" in printed


def test_adding_a_model_shows_the_example_plugin_as_it_is():
    """Each code block of "Adding a model" is a verbatim part of examples/fstore-rms: its module, its tests,
    its pyproject.toml."""
    section = _section("### Adding a model")
    sources = {p: p.read_text() for p in (PLUGIN / "fstore_rms" / "__init__.py", PLUGIN / "tests" / "test_rms.py",
                                           PLUGIN / "pyproject.toml")}
    blocks = _blocks(section, "python") + _blocks(section, "toml")
    assert len(blocks) == 3
    for block in blocks:
        assert any(block in text for text in sources.values()), f"not in {PLUGIN}:\n{block}"
    assert "class RmsEnergy(Extractor):" in blocks[0] and "[project.entry-points" in blocks[2]
