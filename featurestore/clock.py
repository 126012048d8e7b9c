"""A model's frame clock, the one time convention of fstore: frame ``i`` is centred at
``(t0_samples + i * hop_samples) / sample_rate`` seconds of the original file's timeline.

``hop`` and ``t0`` are kept as exact sample counts so that the rationals are exact; extractors
declare their clock with it, the store records it in attributes, and readers rebuild it from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class TimeAxis:
    """A model's frame clock: frame ``i`` is at ``(t0_samples + i*hop_samples) / sample_rate`` s."""

    sample_rate: int
    hop_samples: int
    t0_samples: int = 0

    @property
    def hop(self) -> Fraction:
        return Fraction(self.hop_samples, self.sample_rate)

    @property
    def t0(self) -> Fraction:
        return Fraction(self.t0_samples, self.sample_rate)

    @property
    def hop_s(self) -> float:
        return float(self.hop)

    @property
    def t0_s(self) -> float:
        return float(self.t0)

    @property
    def frame_rate_hz(self) -> float:
        return float(1 / self.hop)

    def times(self, n_frames: int) -> np.ndarray:
        """Frame centres in seconds, shape (n_frames,), float64."""
        return (self.t0_samples + np.arange(n_frames, dtype=np.float64) * self.hop_samples) / self.sample_rate

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "TimeAxis":
        """The clock recorded in a store's attributes (:meth:`as_attrs`'s exact integer fields)."""
        return cls(int(attrs["sample_rate"]), int(attrs["hop_samples"]), int(attrs.get("t0_samples", 0)))

    def as_attrs(self) -> dict[str, Any]:
        """The clock as store attributes: the exact sample counts plus their values in seconds and Hz."""
        return {
            "sample_rate": self.sample_rate,
            "hop_samples": self.hop_samples,
            "t0_samples": self.t0_samples,
            "hop_s": self.hop_s,
            "t0_s": self.t0_s,
            "frame_rate_hz": self.frame_rate_hz,
        }
