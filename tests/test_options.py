"""Model options from the Config fields: flags, --option MODEL.FIELD=VALUE, environment variables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import featurestore as fs
from featurestore.extractors import registry
from featurestore.extractors.crepe import CrepeConfig
from featurestore.extractors.mert import MertConfig
from featurestore.extractors.openl3 import OpenL3Config
from featurestore.options import model_configs, parse_option_texts

from .conftest import write_wav
from .helpers import fstore


def test_every_builtin_config_field_declares_its_help():
    for name in ("crepe", "openl3", "mert", "madmom"):
        for f in dataclasses.fields(registry.get(name).Config):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help"


def test_flags_and_option_texts_give_the_same_config():
    by_flag = model_configs(["crepe"], {"crepe": {"capacity": "tiny", "viterbi": False}}, [], {"precision": "fp32"})
    by_text = model_configs(["crepe", "mert"], {}, ["crepe.capacity=tiny", "crepe.viterbi=no", "mert.window_s=10"],
                            {"precision": "bf16"})
    assert by_flag["crepe"] == CrepeConfig(capacity="tiny", viterbi=False)
    assert by_text["crepe"] == CrepeConfig(capacity="tiny", viterbi=False, precision="bf16")
    assert by_text["mert"].window_s == 10.0 and by_text["mert"].precision == "bf16"


@pytest.mark.parametrize("texts, message", [
    (["crepe.capacity=huge"], "capacity 'huge': use one of tiny, small"),
    (["crepe.size=tiny"], "no option 'size'"),
    (["nosuch.x=1"], "unknown model 'nosuch'"),
    (["crepe.viterbi=maybe"], "use true or false"),
    (["mert.window_s=long"], "not a float"),
    (["crepe-capacity"], "write MODEL.FIELD=VALUE"),
    (["mert.overlap_s=20"], "half the window"),
])
def test_bad_options_are_refused_with_the_reason(texts, message):
    with pytest.raises(ValueError, match=message):
        model_configs(["crepe", "mert"], {}, texts, {})


def test_option_for_an_unselected_model_is_ignored():
    assert set(model_configs(["crepe"], {}, ["mert.layers=all"], {})) == {"crepe"}
    assert parse_option_texts(["a.b=c=d"]) == {"a": {"b": "c=d"}}


def test_environment_fills_a_path_left_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("FSTORE_OPENL3_WEIGHTS", str(tmp_path / "w.h5"))
    assert OpenL3Config().weights_path == str(tmp_path / "w.h5")
    assert OpenL3Config(weights_path=tmp_path / "x.h5").weights_path == str(tmp_path / "x.h5")
    monkeypatch.delenv("FSTORE_OPENL3_WEIGHTS")
    assert OpenL3Config().weights_path is None


def test_mert_layers_have_one_canonical_form():
    assert MertConfig(layers="8, 6,7").layers == (6, 7, 8) == MertConfig(layers=[8, 7, 6]).layers
    assert MertConfig(layers=" LAST ").layers == "last" and MertConfig(layers=3).layers == (3,)
    for bad in ("", "1,1", "-1", "x"):
        with pytest.raises(ValueError):
            MertConfig(layers=bad)


def test_plugin_options_through_the_cli(tmp_path, fake_models):
    audio = tmp_path / "audio"
    write_wav(audio / "a.wav", 0.5)
    plain = fstore("extract", audio, "--store", tmp_path / "s.zarr", "--models", "fake")
    doubled = fstore("extract", audio, "--store", tmp_path / "t.zarr", "--models", "fake", "-o", "fake.gain=2")
    assert plain.exit_code == 0 and doubled.exit_code == 0, doubled.output
    one = fs.open_store(str(tmp_path / "s.zarr")).load("a", "fake").values
    two = fs.open_store(str(tmp_path / "t.zarr")).load("a", "fake").values
    np.testing.assert_allclose(two, 2 * one, rtol=1e-6)
    bad = fstore("extract", audio, "--store", tmp_path / "u.zarr", "--models", "fake", "-o", "fake.gain=loud")
    assert bad.exit_code == 2 and "not a float" in bad.output


def test_generated_flags_are_in_the_help():
    text = fstore("extract", "--help").output
    for flag in ("--crepe-capacity", "--no-crepe-viterbi", "--openl3-weights", "--mert-model", "--mert-layers", "--option"):
        assert flag in text
