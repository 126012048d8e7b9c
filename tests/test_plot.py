"""fstore plot / fstore show: the figure's panels and axes, the PNG, the text summary."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import featurestore as fs
import featurestore.run as fsrun
from featurestore.discover import discover
from featurestore.extractors import registry
from featurestore.plot import note_ticks, plot_song
from featurestore.store import FeatureStore

from .conftest import write_wav
from .helpers import fstore

pytest.importorskip("matplotlib")


@pytest.fixture
def store(tmp_path, fake_models):
    write_wav(tmp_path / "audio" / "song.wav", 3.0, freq=220.0)
    target = FeatureStore(str(tmp_path / "s.zarr"), mode="a")
    exts = [registry.create(n) for n in ("fake", "slow", "madmom")]
    for e in exts:
        e.load("cpu")
    fsrun.run(target, discover(tmp_path / "audio").files, exts)
    return target


def test_one_panel_per_model_on_a_shared_time_axis(store):
    fig = plot_song(fs.open_store(store.url), "song", ["madmom", "slow", "fake"], start=0.5, end=2.5)
    madmom, slow, fake = fig.axes[:3]
    assert [a.get_title(loc="left") for a in (madmom, slow, fake)] == ["madmom", "slow", "fake"]
    assert madmom.get_shared_x_axes().joined(madmom, fake)
    assert fake.get_xlabel() == "time (s)" and madmom.get_ylabel() == "activation"
    assert len(fake.images) == 1 and fake.get_ylabel().startswith("feature")  # 2-D: heatmap
    line_t = madmom.lines[0].get_xdata()
    assert 0.5 <= line_t.min() < 0.52 and 2.48 < line_t.max() < 2.5  # the --start/--end window, in seconds
    assert "song" in fig._suptitle.get_text() and "song.wav" in fig._suptitle.get_text()


def test_pitch_panel_uses_a_log_axis_with_note_names():
    ticks, names = note_ticks(200, 500)
    assert "A3" in names and "C4" in names and "A4" in names and np.isclose(ticks[names.index("A4")], 440.0)
    wide_ticks, wide = note_ticks(50, 2000)
    assert set(n[0] for n in wide) == {"A", "C"}


def test_plot_command_writes_a_png(tmp_path, store):
    out = tmp_path / "p.png"
    result = fstore("plot", "song", "--store", store.url, "-o", str(out), "-m", "madmom,fake")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 panels" in result.output
    missing = fstore("plot", "nope", "--store", store.url, "-o", str(out))
    assert missing.exit_code == 1 and "nope" in missing.output


def test_a_clear_message_without_matplotlib(tmp_path, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = fstore("plot", "song", "--store", store.url, "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 1 and "[plot]" in result.output


def test_show_summarises_each_model(store):
    text = fstore("show", "song", "--store", store.url)
    assert text.exit_code == 0 and "madmom" in text.stdout and "300 frames at 100 Hz" in text.stdout
    rows = {r["group"]: r for r in json.loads(fstore("show", "song", "--store", store.url, "--json").stdout)}
    assert rows["slow"]["frames"] == 30 and rows["fake"]["per_feature"]["rms"]["max"] > 0
    assert rows["madmom"]["fingerprint"] == store.model_attrs("madmom")["fingerprint"]


@pytest.fixture
def beating(tmp_path, fake_models):
    """A 6-s click train at 120 BPM through madmom and the fake model."""
    import soundfile as sf

    rate = 44100
    wave = np.zeros(6 * rate, np.float32)
    for start in range(int(0.25 * rate), wave.size, rate // 2):
        wave[start : start + 400] = np.hanning(400) * np.sin(2 * np.pi * 1500 * np.arange(400) / rate)
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "clicks.wav", wave, rate)
    target = FeatureStore(str(tmp_path / "beats.zarr"), mode="a")
    exts = [registry.create(n) for n in ("madmom", "fake")]
    for e in exts:
        e.load("cpu")
    fsrun.run(target, discover(tmp_path / "audio").files, exts)
    return target


def test_show_prints_the_tempo_of_a_beat_activation(beating):
    rows = {r["group"]: r for r in json.loads(fstore("show", "clicks", "--store", beating.url, "--json").stdout)}
    beats = fs.open_store(beating.url).beats("clicks")
    assert rows["madmom"]["beats"] == beats.size >= 8 and abs(rows["madmom"]["tempo_bpm"] - 120) < 2
    assert "tempo_bpm" not in rows["fake"]
    text = fstore("show", "clicks", "--store", beating.url).stdout
    assert f"tempo {rows['madmom']['tempo_bpm']:.1f} BPM from {beats.size} beats" in text


def test_plot_marks_the_beats_on_every_panel(beating):
    reader = fs.open_store(beating.url)
    beats = reader.beats("clicks")
    fig = plot_song(reader, "clicks", ["madmom", "fake"], start=1.0, end=4.0)
    shown = beats[(beats >= 1.0) & (beats < 4.0)]
    for ax in fig.axes[:2]:
        (lines,) = [c for c in ax.collections if len(c.get_segments()) == shown.size]
        np.testing.assert_allclose([seg[0][0] for seg in lines.get_segments()], shown)
    markers = [line for line in fig.axes[0].lines if line.get_label() == f"{shown.size} beats"]
    assert len(markers) == 1 and np.allclose(markers[0].get_xdata(), shown)
