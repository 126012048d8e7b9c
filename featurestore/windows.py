"""Fixed-length windows of songs, planned from the store's metadata alone (no feature is read).

A :class:`Grid` cuts every song into windows ``[j·hop_s, j·hop_s + window_s)`` seconds, ``j = 0, 1,
...``. A window holds the frames whose centres lie in it (the rule of ``load(start=, end=)``), so on
a clock of hop ``h`` it holds ``window_s / h`` frames wherever it starts, provided that is a whole
number: :meth:`Grid.frames` refuses other lengths, naming the multiple to use (0.2 s fits OpenL3's
10 Hz and MERT's 75 Hz together). Lengths and hops are taken as exact fractions (0.1 s is 1/10 s),
so window bounds that fall on frame centres are compared exactly.

Which windows a song has (:func:`window_range`) depends on its frame counts and on two choices:

- ``align=None``: each model on its own clock. ``pad="drop"`` keeps the windows in which every
  model has all its frames; ``pad="nan"`` every window, from 0, that holds a frame of some model.
- ``align=<model>``: every model on that model's clock, as ``load_song(align=..., method="nearest")``
  puts it. ``pad="drop"`` keeps the windows in which the target has all its frames and every other
  model covers each of the target's times (a frame within half its hop, as nearest alignment
  needs; otherwise the value would be NaN); ``pad="nan"`` every window, from 0, that holds a frame
  of the target.

Counts and bounds are computed in integers and fractions per song (no loop over windows), so planning
a store of many long songs costs a few operations per (song, model).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

from .clock import TimeAxis

#: window lengths and hops are read as the nearest fraction with a denominator up to this: 0.1 is
#: 1/10 s and 1/75 is 1/75 s, not their binary approximations
MAX_DENOMINATOR = 1_000_000
#: what happens at a song's end: windows that do not fit are dropped, or kept padded with NaN
PADS = ("drop", "nan")

__all__ = ["MAX_DENOMINATOR", "PADS", "Grid", "window_range"]


def _seconds(value: float, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return Fraction(float(value)).limit_denominator(MAX_DENOMINATOR)


@dataclass(frozen=True)
class Grid:
    """Windows of ``window`` seconds starting every ``hop`` seconds from 0 (exact fractions)."""

    window: Fraction
    hop: Fraction

    @classmethod
    def of(cls, window_s: float, hop_s: float | None = None) -> "Grid":
        """The grid of ``window_s`` every ``hop_s`` seconds (default: back to back)."""
        window = _seconds(window_s, "window_s")
        return cls(window, window if hop_s is None else _seconds(hop_s, "hop_s"))

    def frames(self, clocks: Mapping[str, TimeAxis]) -> dict[str, int]:
        """Frames per window on each clock; ValueError unless every count is a whole number, naming the
        shortest window length that fits all of them."""
        hops = {name: Fraction(axis.hop_samples, axis.sample_rate) for name, axis in clocks.items()}
        uneven = {name: self.window / h for name, h in hops.items() if (self.window / h).denominator != 1}
        if uneven:
            step = Fraction(math.lcm(*(h.numerator for h in hops.values())), math.gcd(*(h.denominator for h in hops.values())))
            which = ", ".join(f"{float(n):g} of {name}'s" for name, n in uneven.items())
            raise ValueError(f"window_s={float(self.window):g} holds {which} frames: a window must hold a whole number of "
                             f"frames of {', '.join(clocks)}; use a multiple of {float(step):g} s")
        return {name: int(self.window / h) for name, h in hops.items()}

    def bounds(self, j: int) -> tuple[float, float]:
        """Window ``j`` as ``(start, end)`` seconds for ``load(start=, end=)``: the floats nearest the exact
        bounds, so a bound on a frame centre equals that centre's time as the reader computes it."""
        return float(j * self.hop), float(j * self.hop + self.window)

    def first_frame(self, axis: TimeAxis, j: int) -> int:
        """The index on ``axis`` of window ``j``'s first frame: the first centre at or after its start
        (negative before the clock's first frame)."""
        return math.ceil((j * self.hop * axis.sample_rate - axis.t0_samples) / axis.hop_samples)

    def last_start(self, axis: TimeAxis, frame: int) -> int:
        """The last window whose first frame on ``axis`` is at most ``frame``."""
        return math.floor((frame * axis.hop_samples + axis.t0_samples) / (self.hop * axis.sample_rate))

    def first_start(self, axis: TimeAxis, frame: int) -> int:
        """The first window whose first frame on ``axis`` is at least ``frame``."""
        return math.floor(((frame - 1) * axis.hop_samples + axis.t0_samples) / (self.hop * axis.sample_rate)) + 1


def window_range(grid: Grid, clocks: Mapping[str, tuple[TimeAxis, int]], frames: Mapping[str, int],
                 align: str | None, pad: str) -> range:
    """The windows ``j`` of one song (window ``j`` starts at ``j·hop``), as the module docstring says.

    ``clocks`` maps each model read to its clock and the song's frame count; ``frames`` the frames per
    window (:meth:`Grid.frames`) of the clocks that shape an item (the target's alone when aligning).
    """
    if align is not None:
        target, count = clocks[align]
        if pad == "nan":
            return range(grid.last_start(target, count - 1) + 1)
        n = frames[align]
        lo, hi = grid.first_start(target, 0), grid.last_start(target, count - n)
        for model, (axis, length) in clocks.items():
            if model == align:
                continue
            # the target times this model covers: within half its hop of one of its frames
            low = Fraction(2 * axis.t0_samples - axis.hop_samples, 2 * axis.sample_rate)
            high = Fraction(2 * axis.t0_samples + (2 * length - 1) * axis.hop_samples, 2 * axis.sample_rate)
            first = math.ceil((low * target.sample_rate - target.t0_samples) / target.hop_samples)
            last = math.floor((high * target.sample_rate - target.t0_samples) / target.hop_samples)
            lo, hi = max(lo, grid.first_start(target, first)), min(hi, grid.last_start(target, last - n + 1))
        return range(max(lo, 0), hi + 1)
    if pad == "nan":
        return range(max(grid.last_start(axis, length - 1) for axis, length in clocks.values()) + 1)
    lo = max(grid.first_start(axis, 0) for axis, _ in clocks.values())
    hi = min(grid.last_start(axis, length - frames[model]) for model, (axis, length) in clocks.items())
    return range(max(lo, 0), hi + 1)
