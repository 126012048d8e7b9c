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
