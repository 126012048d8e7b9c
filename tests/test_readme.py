"""The README's code runs or is the code it shows (docs that cannot rot): the Python API example runs
against a store made from audio_files/, and "Adding a model" shows the example plugin's own code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from featurestore.clock import TimeAxis
from featurestore.store import FeatureStore

from .helpers import fstore, write_group

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
    """The Python API example, then "Layers on read" on a stand-in for MERT stored with layers 6, 8 and 12
    (random values on MERT's clock: the real weights cannot be downloaded here)."""
    shutil.copytree(ROOT / "audio_files", tmp_path / "audio_files")
    monkeypatch.chdir(tmp_path)
    result = fstore("extract", "--models", "madmom,crepe", "--crepe-capacity", "tiny")
    assert result.exit_code == 0, result.output
    store = FeatureStore("features.zarr", mode="r+")
    rng = np.random.default_rng(0)
    mert = {song: rng.standard_normal((3, store.array("madmom", song).shape[0] * 3 // 4, 8)).astype(np.float32)
            for song in store.songs("madmom")}
    write_group(store, "mert", mert, ("layer", "time", "feature"), TimeAxis(24000, 320, 200),
                coords={"layer": [6, 8, 12]}, config={"layers": [6, 8, 12]})
    api, layers = _blocks(README.replace(_section("### Adding a model"), ""), "python")
    namespace: dict = {}
    exec(compile(api, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "[0.   0.01 0.02] 0.01" in printed and "Dimensions" in printed
    exec(compile(layers, "README.md", "exec"), namespace)
    assert namespace["mert"].dims == ("layer", "time", "feature") and namespace["last"].dims == ("time", "feature")
    assert namespace["vectors"].dims == ("song", "feature") and len(namespace["windows"]) > 0


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
