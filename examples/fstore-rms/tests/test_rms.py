"""The rms plugin: the conformance suite, its numbers against a float64 reference written
independently (a loop over frames), and its option through ``fstore extract``."""

from __future__ import annotations

import json

import numpy as np
import pytest

fstore_rms = pytest.importorskip("fstore_rms", reason="install the plugin first: pip install -e examples/fstore-rms")

from featurestore.testing import ExtractorContract, test_signal  # noqa: E402

RmsEnergy = fstore_rms.RmsEnergy
RATE, HOP = 44100, 441


def reference_db(x: np.ndarray, floor_db: float) -> np.ndarray:
    """Frame i: the mean square, in float64, of the 882 samples [441 (i-1), 441 (i+1)), zeros outside."""
    x = np.asarray(x, dtype=np.float64)
    n_frames = int(np.ceil(len(x) / HOP))
    out = np.empty(n_frames)
    for i in range(n_frames):
        seg = x[max(0, (i - 1) * HOP) : (i + 1) * HOP]
        out[i] = max(np.sum(seg * seg) / (2 * HOP), 10 ** (floor_db / 10))
    return 10 * np.log10(out)


class TestRmsContract(ExtractorContract):
    alternative_options = {"floor_db": -60.0}  # options that must change the fingerprint

    def make_extractor(self, **options):
        return RmsEnergy(**options)


@pytest.fixture(scope="module")
def rms():
    ext = RmsEnergy()
    ext.load("cpu")
    return ext


@pytest.mark.parametrize("n", [1, 440, 441, 442, 882, 3 * HOP, RATE + 17])
def test_matches_the_float64_reference(rms, n):
    x = test_signal(n, RATE, seed=n)
    got = rms.extract(x)
    assert got.shape == (-(-n // HOP),)
    np.testing.assert_allclose(got, reference_db(x, -100.0), rtol=0, atol=1e-4)


def test_a_sine_reads_its_level_and_silence_the_floor(rms):
    """A sine of amplitude a is 20 log10(a / sqrt 2) dB wherever its frame lies inside it."""
    t = np.arange(RATE) / RATE
    x = np.concatenate([0.5 * np.sin(2 * np.pi * 1000 * t), np.zeros(RATE)]).astype(np.float32)
    y = rms.extract(x)
    np.testing.assert_allclose(y[1:99], 20 * np.log10(0.5 / np.sqrt(2)), atol=1e-3)
    assert (y[101:] == -100.0).all()
    quiet = RmsEnergy(floor_db=-60)
    quiet.load("cpu")
    assert (quiet.extract(x)[101:] == -60.0).all()


def test_the_option_reaches_the_store_from_the_command_line(tmp_path):
    """``-o rms.floor_db=-60`` sets the floor of the arrays stored; a value the Config refuses is exit 2."""
    import soundfile as sf
    from typer.testing import CliRunner

    import featurestore
    from featurestore.cli import app

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "quiet.wav", np.zeros(RATE // 2, dtype=np.float32), RATE)
    store = str(tmp_path / "s.zarr")
    run = ["extract", str(tmp_path / "audio"), "--store", store, "--models", "rms", "-o"]
    result = CliRunner().invoke(app, run + ["rms.floor_db=-60"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stored = featurestore.open_store(store).load("quiet", "rms")
    assert stored.shape == (50,) and (stored.values == -60.0).all()
    info = CliRunner().invoke(app, ["info", store, "--json"], catch_exceptions=False)
    assert json.loads(info.output)["models"]["rms"]["songs"] == 1
    refused = CliRunner().invoke(app, run + ["rms.floor_db=nan"], catch_exceptions=False)
    assert refused.exit_code == 2 and "floor_db" in refused.output
