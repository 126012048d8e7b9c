"""The test extractors (tests/fakes.py) pass the conformance suite every model passes, so the run, store and
read tests exercise models that keep the contract. (``unobtainable`` stands for a model whose weights cannot
be had: it never loads, and the tests of runs that leave it out check its refusal.)"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from featurestore.extractors import registry
from featurestore.testing import ExtractorContract

from .fakes import COMPUTE_LOG_ENV, FAKES


class _FakeContract(ExtractorContract):
    model: ClassVar[str]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _registered(cls, tmp_path_factory):
        """Registered for the class (the contract looks the model up by name); counted ones log to a temp file."""
        registry.register(cls.model, FAKES[cls.model])
        patch = pytest.MonkeyPatch()
        patch.setenv(COMPUTE_LOG_ENV, str(tmp_path_factory.mktemp("log") / "computes.log"))
        yield
        patch.undo()
        registry.reset()

    @pytest.fixture(scope="class")
    @classmethod
    def extractor(cls, _registered):
        ext = cls().make_extractor()
        ext.load(cls.device)
        return ext

    def make_extractor(self, **options: Any):
        return registry.get(self.model)(**options)


class TestFakeContract(_FakeContract):
    model = "fake"
    alternative_options = {"gain": 2.0}


class TestSlowContract(_FakeContract):
    model = "slow"
    alternative_options = {"gain": 2.0}


class TestDeviceFakeContract(_FakeContract):
    model = "devfake"
    alternative_options = {"gain": 2.0}


class TestWeightedContract(_FakeContract):
    model = "weighted"
    alternative_options = {"gain": 2.0}
    weights: ClassVar[str] = ""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _weights_file(cls, tmp_path_factory):
        path = tmp_path_factory.mktemp("weights") / "factor.txt"
        path.write_text("1.5")
        cls.weights = str(path)

    def make_extractor(self, **options: Any):
        return registry.get(self.model)(**{"weights_path": self.weights, **options})


class TestCountedContract(_FakeContract):
    model = "cfake"
    alternative_options = {"gain": 2.0}
