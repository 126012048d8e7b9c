"""MERT accuracy figures for the README: bf16 vs fp32, and windows vs one pass.

    python bench/mert_accuracy.py [--minutes 3]

Uses the parity snapshot in ../shared/parity/mert (MERT's architecture at a small size, random
weights, made by MERT's own code) and its real-music inputs. Prints per-frame cosine
similarity (min and mean over frames) for every hidden state:

- bf16 against fp32 on each parity input (the gate in tests/test_mert.py is 0.999);
- a song of ``--minutes`` minutes (the two inputs in turn, each repetition at its own gain
  between -20 and 0 dB, so the level changes along the song as music does) computed in the default 30-s
  windows against one pass over the whole song, with the first layer's statistics taken over
  the song (``normalize="song"``, the default) and per window (``normalize="window"``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from featurestore.extractors.mert import Mert

PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity" / "mert"


def per_frame_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching frames along the last axis, float64: shape a.shape[:-1]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def run(wave: np.ndarray, **options) -> np.ndarray:
    ext = Mert(model_path=str(PARITY / "snapshot"), layers="all", **options)
    ext.load("cpu")
    return ext.extract(wave)


def report(label: str, cosine: np.ndarray) -> None:
    cells = "  ".join(f"{c.min():.6f}/{c.mean():.6f}" for c in cosine)
    print(f"{label:34} {cells}   (min {cosine.min():.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the looped song for the window test")
    args = parser.parse_args()
    if not PARITY.is_dir():
        raise SystemExit(f"{PARITY} is absent: these figures need the parity fixtures")
    print("per-frame cosine, min/mean over frames, for hidden states 0..L")
    for name in ("chirp", "sample"):
        wave = np.load(PARITY / f"{name}.npz")["audio24k"]
        report(f"bf16 vs fp32, {name} ({len(wave) / 24000:.1f} s)", per_frame_cosine(run(wave, precision="bf16"), run(wave)))
    clips = [np.load(PARITY / f"{name}.npz")["audio24k"] for name in ("sample", "chirp")]
    gains = 10 ** (np.random.default_rng(0).uniform(-20, 0, size=1000) / 20)
    parts, n = [], int(args.minutes * 60 * 24000)
    while sum(map(len, parts)) < n:
        parts.append(gains[len(parts)] * clips[len(parts) % 2])
    song = np.concatenate(parts)[:n].astype(np.float32)
    one_pass = run(song, window_s=args.minutes * 60 + 1)
    for normalize in ("song", "window"):
        windowed = run(song, normalize=normalize)
        report(f"30-s windows vs one pass, {normalize}", per_frame_cosine(windowed, one_pass))


if __name__ == "__main__":
    main()
