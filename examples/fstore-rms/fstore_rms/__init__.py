"""RMS energy at 100 Hz: a complete fstore model in one module, registered as ``rms``.

Input: 44.1 kHz mono float32, the rate madmom reads, so that ``rms`` and ``madmom`` frames share
one clock (hop 441 samples = 10 ms; at 22.05 kHz 10 ms would be 220.5 samples, not a whole hop).

Frames: ``T = ceil(N / 441)``; frame ``i`` is centred on sample ``441 i`` and covers the 882
samples ``[441 (i - 1), 441 (i + 1))`` (20 ms, rectangular), zeros outside the signal.

Output: (T,) float32, the frame's level in dB, ``10 log10(mean of x²)``, so 0 dB is an RMS of 1.0
(a full-scale square wave; a full-scale sine is -3.01 dB). Frames quieter than the option
``floor_db`` (silence would be -inf) are given ``floor_db``: ``fstore extract -o rms.floor_db=-60``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from featurestore.extractors.base import Extractor, ExtractorConfig, Licenses, Output, TimeAxis, option

HOP = 441  # samples at 44.1 kHz: 10 ms


@dataclass(frozen=True)
class RmsConfig(ExtractorConfig):
    floor_db: float = option(-100.0, "Level (dB) given to quieter frames, silence included.", parse=float)

    def validate(self) -> None:
        if not math.isfinite(self.floor_db):
            raise ValueError(f"floor_db {self.floor_db}: must be a finite number of dB")


class RmsEnergy(Extractor):
    name: ClassVar[str] = "rms"
    description: ClassVar[str] = "RMS energy of 20-ms frames in dB, 100 fps (example plugin)"
    licenses: ClassVar[Licenses] = Licenses(code="MIT (fstore-rms)", weights="none (no weights)")
    Config: ClassVar[type[ExtractorConfig]] = RmsConfig
    output: ClassVar[Output] = Output(TimeAxis(sample_rate=44100, hop_samples=HOP, t0_samples=0),
                                      units="dB (0 dB = RMS 1.0)", kind="activation")

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // HOP)

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        """(N,) float32 -> (T,) float32 dB: each hop's energy once, each frame the sum of its two hops."""
        t = self.n_frames(wave.shape[0])
        padded = np.zeros((t + 1) * HOP, dtype=np.float32)  # one hop of zeros before frame 0's centre
        padded[HOP : HOP + wave.shape[0]] = wave
        hop_energy = np.square(padded).reshape(t + 1, HOP).sum(axis=1, dtype=np.float64)
        mean_square = (hop_energy[:-1] + hop_energy[1:]) / (2 * HOP)
        floor = 10.0 ** (self.config.floor_db / 10)
        return (10 * np.log10(np.maximum(mean_square, floor))).astype(np.float32)
