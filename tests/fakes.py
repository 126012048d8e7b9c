"""Small deterministic extractors for testing the store, pipeline and read API without real models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from featurestore.extractors.base import Extractor, ExtractorConfig, TimeAxis, WeightFile, WeightsInfo


@dataclass(frozen=True)
class FakeConfig(ExtractorConfig):
    gain: float = 1.0


class FakeFrames(Extractor):
    """RMS and mean of 10-ms frames at 8 kHz (hop 80, t0 40): (T, 2), T = N // 80."""

    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "test extractor: framewise rms and mean"
    code_license: ClassVar[str] = "MIT (tests)"
    weights_license: ClassVar[str] = "none (no weights)"
    Config: ClassVar[type[ExtractorConfig]] = FakeConfig
    rate: ClassVar[int] = 8000
    hop: ClassVar[int] = 80

    @property
    def time_axis(self) -> TimeAxis:
        return TimeAxis(self.rate, self.hop, self.hop // 2)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("time", "feature")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("rms", "mean")

    @property
    def min_samples(self) -> int:
        return self.hop

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop

    @classmethod
    def weights_info(cls, config=None) -> WeightsInfo:
        return WeightsInfo("none (computed)", True)

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        return ()

    def _load(self, device: str) -> None:
        pass

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        frames = wave[: self.n_frames(len(wave)) * self.hop].reshape(-1, self.hop)
        rms = np.sqrt((frames**2).mean(axis=1))
        return (self.config.gain * np.stack([rms, frames.mean(axis=1)], axis=1)).astype(np.float32)


class SlowFrames(FakeFrames):
    """The same at 10 Hz from 4 kHz input (hop 400, t0 0): (T,), for alignment tests."""

    name: ClassVar[str] = "slow"
    rate: ClassVar[int] = 4000
    hop: ClassVar[int] = 400

    @property
    def time_axis(self) -> TimeAxis:
        return TimeAxis(self.rate, self.hop, 0)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("time",)

    @property
    def feature_names(self) -> None:
        return None

    plot_kind: ClassVar[str] = "activation"

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return super()._extract(wave)[:, 0].copy()


class Unobtainable(FakeFrames):
    """A model whose weights cannot be had here (like OpenL3 or MERT offline)."""

    name: ClassVar[str] = "unobtainable"

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        from featurestore.errors import WeightsUnavailable

        raise WeightsUnavailable(self.name, "model.h5 is not in the cache", cache_dir="/cache/fstore",
                                 how="pass --unobtainable-weights PATH")


FAKES = {"fake": "tests.fakes:FakeFrames", "slow": "tests.fakes:SlowFrames", "unobtainable": "tests.fakes:Unobtainable"}
