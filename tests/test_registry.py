"""The registry's public API: register, unregister and reset."""

from __future__ import annotations

import pytest

from featurestore.extractors import registry

from .fakes import FakeFrames


def test_register_a_class_or_a_target_string_and_undo():
    try:
        registry.register("fake", FakeFrames)
        assert registry.get("fake") is FakeFrames and "fake" in registry.names()
        registry.register("slow", "tests.fakes:SlowFrames")
        assert registry.create("slow").name == "slow"
        registry.unregister("madmom")  # built-ins can be hidden too
        assert "madmom" not in registry.names()
        with pytest.raises(KeyError, match="unknown model 'madmom'"):
            registry.get("madmom")
    finally:
        registry.reset()
    assert "fake" not in registry.names() and "madmom" in registry.names()


def test_register_checks_the_name():
    registry.register("other", FakeFrames)
    try:
        with pytest.raises(TypeError, match="not an Extractor named 'other'"):
            registry.get("other")
    finally:
        registry.unregister("other")
    assert "other" not in registry.names()


def test_the_names_of_fstore_0_2_still_read_with_a_deprecation_warning():
    """Code written against 0.2 reads the renamed declaration names; each says its new name."""
    import warnings

    extractor = FakeFrames()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor.licenses, extractor.output.kind, extractor.describe()  # the new names do not warn
    for old, new, value in (("code_license", "licenses.code", extractor.licenses.code),
                            ("weights_license", "licenses.weights", extractor.licenses.weights),
                            ("plot_kind", "output.kind", extractor.output.kind)):
        with pytest.warns(DeprecationWarning, match=f"use Extractor.{new}"):
            assert getattr(extractor, old) == value
    with pytest.warns(DeprecationWarning, match=r"use Extractor.describe\(\)"):
        assert extractor.group_attrs() == extractor.describe()
    with pytest.warns(DeprecationWarning, match="featurestore.run"):
        import importlib

        import featurestore.pipeline as pipeline

        importlib.reload(pipeline)
    from featurestore.run import run

    assert pipeline.run is run
