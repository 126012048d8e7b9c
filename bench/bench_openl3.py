"""Seconds per 30-s clip: the plain nn.Conv2d net (fp32 NCHW, batch 32) vs fstore's OpenL3 in fp32 and bf16.

Usage: python bench/bench_openl3.py WEIGHTS.h5 [--windows N]
Timings cover N windows (default 64) and are scaled to the 296 windows of a 30-s clip.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_seconds, gemm_gflops  # noqa: E402

GFLOP_PER_WINDOW = 20.4
WINDOWS_PER_CLIP = 296


def main() -> None:
    import numpy as np
    import torch

    from featurestore.extractors._openl3_frontend import mel_filterbank, melspectrogram_db
    from featurestore.extractors._openl3_net import build_plain_net, read_keras_weights
    from featurestore.extractors.openl3 import OpenL3
    from featurestore.testing import test_signal

    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--windows", type=int, default=64)
    args = parser.parse_args()
    windows = torch.from_numpy(test_signal(48000 * args.windows, 48000).reshape(args.windows, 48000))
    fp32, bf16 = gemm_gflops("fp32"), gemm_gflops("bf16")
    print(f"GEMM 4096^3: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    floor = {"fp32": GFLOP_PER_WINDOW * WINDOWS_PER_CLIP / fp32, "bf16": GFLOP_PER_WINDOW * WINDOWS_PER_CLIP / bf16}
    plain = build_plain_net(read_keras_weights(args.weights))
    fb = torch.from_numpy(mel_filterbank())
    scale = WINDOWS_PER_CLIP / args.windows

    def run_plain() -> None:
        with torch.inference_mode():
            for s in range(0, args.windows, 32):
                plain(melspectrogram_db(windows[s : s + 32], fb)[:, None])

    base = best_seconds(run_plain, repeats=2) * scale
    print("| net | s per 30-s clip | vs plain | floor s | fraction of floor |")
    print("|---|---|---|---|---|")
    print(f"| plain nn.Conv2d fp32 NCHW, batch 32 | {base:.1f} | 1.00x | {floor['fp32']:.1f} | {floor['fp32'] / base:.2f} |")
    for precision in ("fp32", "bf16"):
        ext = OpenL3(weights_path=args.weights, precision=precision)
        ext.load("cpu")
        wave = np.ascontiguousarray(test_signal(4800 * (args.windows - 1) + 24000, 48000))
        t = best_seconds(lambda: ext.extract(wave), repeats=2) * scale
        print(f"| fstore OpenL3 {precision} | {t:.1f} | {base / t:.2f}x | {floor[precision]:.1f} | {floor[precision] / t:.2f} |")


if __name__ == "__main__":
    main()
