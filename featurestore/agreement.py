"""When two computations of one song count as the same result, and how far apart two arrays are.

A store outlives the installation that filled it: another torch, CPU kernel or decoder can move the
numbers. ``fstore verify`` recomputes stored songs and holds the two arrays to the model's
:class:`Tolerance` (declared by each extractor, :meth:`Extractor.tolerance`, per precision): the parity
tolerances for fp32, the bf16 accuracy gates for reduced precision. :func:`compare` measures the pair
and says which checks fail; it knows no model, only the output's dims and feature names.

The computed array is compared as it would be stored: rounded to the stored array's dtype. A group
stored as float16 holds each value to one float16 step, so two computations a hair apart may round
to neighbouring steps; each check allows that one step (for pitch: 1.7 cents) on top of its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: the largest step between neighbouring float16 values, relative to the value (10 mantissa bits)
_FLOAT16_RELATIVE_STEP = 2.0**-10


@dataclass(frozen=True)
class Tolerance:
    """What agreement means for one model at one precision: each check that is set must hold.

    - Values: ``|stored - computed| <= max_abs + max_rel * |computed| + max_frame_rel * M`` for every
      value of a frame, ``M`` being the frame's largest ``|computed|`` value, on at least the fraction
      ``frames`` of the frames (a pitch output's frequencies are left to the cents check when
      ``max_cents`` is set). ``max_frame_rel`` is for outputs whose rounding noise scales with the
      frame rather than with each value (OpenL3's log-magnitude frontend).
    - Cosine: every vector's cosine similarity at least ``min_cosine``; a vector is a frame's values
      along the ``feature`` dim (per layer, for MERT's stacked layers), or all of a frame's values
      without a ``feature`` dim; an output with only a time dim is one vector, the whole sequence.
    - Pitch (outputs with ``frequency`` and ``confidence`` features): the frequency within
      ``max_cents`` on at least ``cents_frames`` of the frames whose stored confidence exceeds
      ``confident`` (every frame when None); two zeros (no pitch) agree, a zero and a pitch do not.
    """

    max_abs: float | None = None
    max_rel: float = 0.0
    max_frame_rel: float = 0.0
    frames: float = 1.0
    min_cosine: float | None = None
    max_cents: float | None = None
    cents_frames: float = 1.0
    confident: float | None = 0.5

    def __post_init__(self) -> None:
        if self.max_abs is None and self.min_cosine is None and self.max_cents is None:
            raise ValueError("a tolerance needs at least one check (max_abs, min_cosine or max_cents)")
        if not (0.0 < self.frames <= 1.0 and 0.0 < self.cents_frames <= 1.0):
            raise ValueError("frames and cents_frames are fractions in (0, 1]")

    def describe(self) -> str:
        """The checks in words, as ``fstore verify`` prints them."""
        parts = []
        if self.max_abs is not None:
            limit = (f"{self.max_abs:g}" + (f" + {self.max_rel:g}·|x|" if self.max_rel else "")
                     + (f" + {self.max_frame_rel:g}·(the frame's largest |x|)" if self.max_frame_rel else ""))
            what = "other values" if self.max_cents is not None else "values"
            parts.append(f"{what} within {limit}" + _on_frames(self.frames))
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.max_cents is not None:
            which = "frames" if self.confident is None else f"frames with confidence > {self.confident:g}"
            parts.append(f"frequency within {self.max_cents:g} cents on {_percent(self.cents_frames)} of {which}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, float | None]:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "max_frame_rel": self.max_frame_rel,
                "frames": self.frames, "min_cosine": self.min_cosine,
                "max_cents": self.max_cents, "cents_frames": self.cents_frames, "confident": self.confident}


@dataclass(frozen=True)
class Agreement:
    """How far a recomputed array lies from the stored one, and which checks of the tolerance fail."""

    max_abs: float  # the largest |stored - computed| over every value
    min_cosine: float  # the smallest cosine over the vectors the tolerance names
    failures: tuple[str, ...] = ()  # each failed check in words

    @property
    def ok(self) -> bool:
        return not self.failures


def compare(stored: np.ndarray, computed: np.ndarray, tolerance: Tolerance, dims: Sequence[str],
            feature_names: Sequence[str] | None = None, frame_times: np.ndarray | None = None) -> Agreement:
    """Measure ``computed`` (float32, as the model returns it) against ``stored`` (float32 or float16, as
    the store holds it) by ``tolerance``; both have the output's ``dims``. ``frame_times`` (seconds per
    frame) lets a failure say where it is worst.

    Raises ValueError when the shapes differ or the tolerance checks pitch on an output without
    ``frequency`` and ``confidence`` features.
    """
    if stored.shape != computed.shape:
        raise ValueError(f"shapes differ: stored {stored.shape}, computed {computed.shape}")
    half = stored.dtype == np.float16
    a = np.moveaxis(np.asarray(stored, dtype=np.float64), list(dims).index("time"), 0)
    b = np.moveaxis(np.asarray(computed).astype(stored.dtype).astype(np.float64), list(dims).index("time"), 0)
    rest = [d for d in dims if d != "time"]
    diff = _abs_difference(a, b)
    cosine = _cosines(a, b, rest)
    failures: list[str] = []

    def where(frame: int) -> str:
        return f" (worst at {frame_times[frame]:.2f} s)" if frame_times is not None else ""

    pitch = None
    if tolerance.max_cents is not None:
        pitch = _pitch_columns(rest, feature_names)
    if tolerance.max_abs is not None and a.shape[0]:
        checked, values = _without(diff, pitch, rest), np.abs(_without(b, pitch, rest))
        limit = tolerance.max_abs + tolerance.max_rel * values
        if tolerance.max_frame_rel and values.size:
            frame_scale = values.reshape(values.shape[0], -1).max(axis=1)
            limit = limit + tolerance.max_frame_rel * frame_scale.reshape((-1,) + (1,) * (values.ndim - 1))
        if half:
            limit = limit + _float16_step(_without(a, pitch, rest), _without(b, pitch, rest))
        excess = (checked - limit).reshape(a.shape[0], -1)
        within = (excess <= 0).all(axis=1) if excess.shape[1] else np.ones(a.shape[0], bool)
        if within.mean() < tolerance.frames:
            worst = int(np.argmax(excess.max(axis=1)))
            failures.append(f"{_percent(within.mean())} of frames have values within the limit (needs "
                            f"{_percent(tolerance.frames)}); |difference| up to {checked.max():.3g}{where(worst)}")
    if tolerance.min_cosine is not None and cosine.size and cosine.min() < tolerance.min_cosine:
        failures.append(f"cosine {cosine.min():.6f} < {tolerance.min_cosine:g}")
    if pitch is not None:
        failures += _pitch_failures(a, b, pitch, rest, tolerance, half, where)
    return Agreement(float(diff.max()) if diff.size else 0.0, float(cosine.min()) if cosine.size else 1.0,
                     tuple(failures))


def _abs_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b|, where two NaNs agree and a NaN against a number is infinitely far."""
    diff = np.abs(a - b)
    both = np.isnan(a) & np.isnan(b)
    diff[both] = 0.0
    diff[np.isnan(diff)] = np.inf
    return diff


def _cosines(a: np.ndarray, b: np.ndarray, rest: Sequence[str]) -> np.ndarray:
    """Cosine of each vector (see :class:`Tolerance`) of time-first ``a`` and ``b``; two zero vectors agree."""
    if not rest:
        a, b = a[np.newaxis], b[np.newaxis]  # one vector: the whole sequence
    elif "feature" in rest:
        axis = 1 + rest.index("feature")
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    else:
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    norm_a, norm_b = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # 1 - |u - v|²/2 of the unit vectors: the cosine, exactly 1 for equal vectors, accurate near 1
        cosine = 1.0 - 0.5 * ((a / norm_a - b / norm_b) ** 2).sum(axis=-1)
    zero_a, zero_b = norm_a[..., 0] == 0, norm_b[..., 0] == 0
    cosine = np.where(zero_a | zero_b, np.where(zero_a & zero_b, 1.0, 0.0), cosine)
    return np.clip(np.nan_to_num(cosine, nan=-1.0), -1.0, 1.0).ravel()  # NaN or inf values: as far apart as can be


def _pitch_columns(rest: Sequence[str], feature_names: Sequence[str] | None) -> tuple[int, int]:
    """Indices of the frequency and confidence features."""
    names = list(feature_names or [])
    if "feature" not in rest or "frequency" not in names or "confidence" not in names:
        raise ValueError(f"a pitch tolerance needs features frequency and confidence, the output has {names or 'none'}")
    return names.index("frequency"), names.index("confidence")


def _without(x: np.ndarray, pitch: tuple[int, int] | None, rest: Sequence[str]) -> np.ndarray:
    """``x`` without the frequency feature when the pitch check takes it."""
    return x if pitch is None else np.delete(x, pitch[0], axis=1 + list(rest).index("feature"))


def _float16_step(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One float16 step at the larger of ``|a|`` and ``|b|``: how far a rounding to float16 may move a value."""
    return np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float64)


def _pitch_failures(a: np.ndarray, b: np.ndarray, pitch: tuple[int, int], rest: Sequence[str],
                    tolerance: Tolerance, half: bool, where: Callable[[int], str]) -> list[str]:
    """The pitch check's failure in words, or nothing."""
    axis = 1 + list(rest).index("feature")
    fa, fb = np.take(a, pitch[0], axis=axis), np.take(b, pitch[0], axis=axis)
    confidence = np.take(a, pitch[1], axis=axis)
    cents = _cents_apart(fa, fb).reshape(a.shape[0], -1).max(axis=1)
    confident = np.ones(a.shape[0], bool) if tolerance.confident is None else \
        (confidence > tolerance.confident).reshape(a.shape[0], -1).all(axis=1)
    if not confident.any():
        return []  # no frame has a pitch to compare
    limit = tolerance.max_cents + (1200 * np.log2(1 + _FLOAT16_RELATIVE_STEP) if half else 0.0)
    within = (cents[confident] <= limit).mean()
    if within >= tolerance.cents_frames:
        return []
    worst = int(np.flatnonzero(confident)[np.argmax(cents[confident])])
    return [(f"frequency within {tolerance.max_cents:g} cents on {_percent(within)} of "
             f"{int(confident.sum())} frames (needs {_percent(tolerance.cents_frames)}); up to "
             f"{cents[worst]:.3g} cents{where(worst)}")]


def _cents_apart(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """|1200·log2(fa/fb)|; 0 where both are 0 Hz, infinite where only one is (or either is negative)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cents = np.abs(1200 * np.log2(fa / fb))
    cents = np.where((fa == 0) & (fb == 0), 0.0, cents)
    return np.where(np.isfinite(cents), cents, np.inf)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g} %"


def _on_frames(fraction: float) -> str:
    return "" if fraction >= 1.0 else f" on {_percent(fraction)} of frames"
