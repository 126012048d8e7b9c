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

    def times(self, n_frames: int, first: int = 0) -> np.ndarray:
        """Centres in seconds of frames ``first .. first + n_frames - 1``, shape (n_frames,), float64.

        The same values, bit for bit, whatever ``first``: ``times(n, first=k)`` equals ``times(k + n)[k:]``.
        A negative ``first`` extends the clock before its first frame (times a window may span)."""
        return (self.t0_samples + np.arange(first, first + n_frames, dtype=np.float64) * self.hop_samples) / self.sample_rate

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


def nearest_frames(source: np.ndarray, target: np.ndarray, hop_s: float) -> np.ndarray:
    """For each ``target`` time, the index of the ``source`` frame whose centre is nearest, provided it lies
    within half the source's hop ``hop_s`` (plus 1 ns for the rounding of times), else -1; on a tie, the
    later frame.

    ``source`` is a clock's frame centres (ascending). This is the rule of pandas' ``get_indexer(...,
    method="nearest", tolerance=hop_s / 2 + 1e-9)``, as xarray's ``reindex`` applies it, written out
    so that the reader's alignment and the window datasets compute one and the same thing. Returns
    int64 indices, the shape of ``target``.
    """
    target = np.asarray(target, dtype=np.float64)
    if len(source) == 0:
        return np.full(target.shape, -1, dtype=np.int64)
    right = np.searchsorted(source, target, side="left")  # the first frame at or after
    left = np.searchsorted(source, target, side="right") - 1  # the last frame at or before
    last = len(source) - 1
    d_left = np.where(left >= 0, np.abs(source[np.clip(left, 0, last)] - target), np.inf)
    d_right = np.where(right <= last, np.abs(source[np.clip(right, 0, last)] - target), np.inf)
    nearest = np.where(d_left < d_right, left, right)
    return np.where(np.minimum(d_left, d_right) <= hop_s / 2 + 1e-9, nearest, -1).astype(np.int64)
