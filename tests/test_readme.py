"""The README's code runs or is the code it shows (docs that cannot rot): the Python API example runs
against a store made from audio_files/, and "Adding a model" shows the example plugin's own code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore.clock import TimeAxis
from featurestore.store import FeatureStore

from .helpers import fstore, write_group

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLUGIN = ROOT / "examples" / "fstore-rms"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of the same or a higher level (a line in a
    code block that starts with # is not a heading)."""
    level = heading.split(" ")[0]
    lines = README.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        mark = lines[end].split(" ")[0]
        if not fenced and mark and set(mark) == {"#"} and len(mark) <= len(level):
            break
    else:
        end = len(lines)
    return "".join(lines[start:end])


def _python_api() -> str:
    (block,) = _blocks(_section("## Python API").replace(_section("### Adding a model"), ""), "python")
    return block


def _extract_examples(tmp_path: Path, monkeypatch) -> FeatureStore:
    """features.zarr made from audio_files/ by the README's command (madmom and CREPE tiny), in tmp_path."""
    shutil.copytree(ROOT / "audio_files", tmp_path / "audio_files")
    monkeypatch.chdir(tmp_path)
    result = fstore("extract", "--models", "madmom,crepe", "--crepe-capacity", "tiny")
    assert result.exit_code == 0, result.output
    return FeatureStore("features.zarr", mode="r+")


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    _extract_examples(tmp_path, monkeypatch)
    namespace: dict = {}
    exec(compile(_python_api(), "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "[0.   0.01 0.02] 0.01" in printed and "Dimensions" in printed
    summary = namespace["summary"]  # the store extract made: fs.extract finds every song cached
    assert summary.exit_code == 0 and summary.totals["madmom"].cached == 3 and summary.totals["crepe"].cached == 3


def test_using_the_features_runs(tmp_path, monkeypatch, capsys):
    """Every block of "Using the features", after the Python API example, on the example store plus stand-ins
    for the weights that cannot be downloaded here (random values on the models' clocks): MERT stored with
    layers 6, 8 and 12, and OpenL3 vectors of 40 more songs in two labelled classes for the probe."""
    pytest.importorskip("sklearn", reason="the README's linear probe uses scikit-learn (in the test extra)")
    pytest.importorskip("h5netcdf", reason="the README opens the HDF5 export with xarray's h5netcdf engine (in the test extra)")
    store = _extract_examples(tmp_path, monkeypatch)
    rng = np.random.default_rng(0)
    examples = {song: store.array("madmom", song).shape[0] for song in store.songs("madmom")}
    mert = {song: rng.standard_normal((3, n * 3 // 4, 8)).astype(np.float32) for song, n in examples.items()}
    write_group(store, "mert", mert, ("layer", "time", "feature"), TimeAxis(24000, 320, 200),
                coords={"layer": [6, 8, 12]}, config={"layers": [6, 8, 12]})
    labels = {f"{genre}/song{i:02d}": genre for genre in ("jazz", "rock") for i in range(20)}
    centre = {genre: rng.standard_normal(512) for genre in ("jazz", "rock")}
    openl3 = {song: (centre.get(labels.get(song)) if song in labels else 0)
              + rng.standard_normal((50, 512)).astype(np.float32) for song in [*examples, *labels]}
    write_group(store, "openl3", {s: v.astype(np.float32) for s, v in openl3.items()}, ("time", "feature"),
                TimeAxis(48000, 4800, 0))
    Path("labels.csv").write_text("".join(f"{song},{genre}\n" for song, genre in labels.items()))

    section = _section("## Using the features")
    for command in _blocks(section, "bash"):
        assert command.startswith("fstore ") and command.count("\n") == 1
        result = fstore(*command.split()[1:])
        assert result.exit_code == 0, result.output
    namespace: dict = {}
    exec(compile(_python_api(), "README.md", "exec"), namespace)
    for block in _blocks(section, "python"):
        exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert float(re.search(r"accuracy (\d\.\d\d)", printed).group(1)) > 0.9
    assert namespace["X2"].shape == (40, 1024)
    assert namespace["mert"].dims == ("layer", "time", "feature") and namespace["last"].dims == ("time", "feature")
    assert namespace["vectors"].dims == ("song", "feature") and len(namespace["windows"]) > 0
    per_beat = namespace["per_beat"]
    assert per_beat["mert"].dims == ("beat", "mert_feature") and per_beat.sizes["beat"] == len(namespace["beats"]) + 1
    assert namespace["index"].query("drum_loop_120bpm", k=5).sizes["song"] == 5
    assert namespace["f0"].dims == ("time",) and namespace["song"].attrs["song_id"] == "vibrato_melody"


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
