"""Seconds per clip for fstore's madmom extractor vs madmom's RNNBeatProcessor as users call it.

    python bench/bench_madmom.py              # one 30-s clip
    python bench/bench_madmom.py --short 20   # 20 two-second clips (the fixed per-clip cost)

Both run on the same 44.1 kHz signals in this process; the extractor runs the eight
networks on one thread, madmom's default spreads them over threads. The split shows
where fstore's time goes: spectral features vs the eight networks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds  # noqa: E402

from featurestore.extractors._madmom_features import beat_features  # noqa: E402
from featurestore.extractors.madmom import MadmomBeats  # noqa: E402
from featurestore.testing import test_signal  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, metavar="N", help="N two-second clips instead of one 30-s clip")
    args = parser.parse_args()
    from madmom.audio.signal import Signal
    from madmom.features.beats import RNNBeatProcessor

    seconds, count = (2, args.short) if args.short else (30, 1)
    waves = [test_signal(seconds * 44100 + 97 * i, 44100) for i in range(count)]
    ext = MadmomBeats()
    ext.load("cpu")
    reference = RNNBeatProcessor()

    def per_clip(fn) -> float:
        return best_seconds(lambda: [fn(w) for w in waves]) / count

    ref_s = per_clip(lambda w: reference(Signal(w, sample_rate=44100)))
    ours_s = per_clip(ext.extract)
    features_s = per_clip(beat_features)
    same = max(np.abs(ext.extract(w) - reference(Signal(w, sample_rate=44100))).max() for w in waves)
    label = f"s per {seconds}-s clip"
    print(f"madmom RNNBeatProcessor (default threads): {ref_s:6.3f} {label}")
    print(f"fstore madmom extractor:                   {ours_s:6.3f} {label} ({ref_s / ours_s:.2f}x)")
    print(f"  of which spectral features:              {features_s:6.3f}, networks: {ours_s - features_s:6.3f}")
    print(f"max |difference|: {same:.2e}")


if __name__ == "__main__":
    main()
