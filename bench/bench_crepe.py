"""Seconds per 30-s clip for fstore's CREPE against a plain ``nn.Conv2d`` port, and against the floor.

    python bench/bench_crepe.py [--capacity full] [--seconds 30] [--reference-seconds 5] [--repeats 2]

In one run (noisy shared machines: every figure is the best of ``--repeats``, and the
machine's own GEMM rates are measured alongside):

* the fp32 and bf16 GEMM rates (4096^3 matmul) and the floors they imply: the network's
  FLOP per clip divided by each rate;
* (a) the plain reference: crepe's layers as ``nn.Conv2d`` (NCHW, TF "same" padding by
  ``F.pad``), ``nn.BatchNorm2d``, ``max_pool2d``, ``nn.Linear``, fp32, the same batches of
  frames, framing and decoding; timed on a ``--reference-seconds`` excerpt and scaled to the
  clip (its cost is linear in frames), since it takes over a minute per clip;
* (b) fstore's extractor, fp32, end to end (framing, network, Viterbi) on the whole clip;
* (c) the same in bf16;

then the speed-ups over (a) and each figure as a fraction of its floor (floor / time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds, gemm_gflops  # noqa: E402

from featurestore.extractors.crepe import HOP, SAMPLE_RATE, Crepe  # noqa: E402
from featurestore.testing import test_signal  # noqa: E402


def network_flop(net: Any) -> float:
    """Multiply-adds x 2 of one frame through crepe's dense layers (every conv tap counted)."""
    from featurestore.extractors._crepe_net import _LENGTHS, _WIDTHS, N_BINS

    flop, c_in = 0.0, 1
    for length, width, c_out in zip(_LENGTHS, _WIDTHS, net.filters):
        flop += 2.0 * length * width * c_in * c_out
        c_in = c_out
    return flop + 2.0 * (_LENGTHS[-1] // 2) * c_in * N_BINS


def plain_reference(net: Any) -> Any:
    """crepe's network as a plain ``nn.Conv2d`` port with the weights of ``net`` (fp32, eval)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from featurestore.extractors._crepe_net import _WIDTHS, BN_EPSILON

    class PlainCrepe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
            c_in = 1
            for i, (width, c_out) in enumerate(zip(_WIDTHS, net.filters)):
                conv = nn.Conv2d(c_in, c_out, (width, 1), stride=(4 if i == 0 else 1, 1))
                conv.weight.data = net.kernels[i].float().permute(2, 1, 0)[..., None].contiguous()
                conv.bias.data = net.biases[i].float()
                norm = nn.BatchNorm2d(c_out, eps=BN_EPSILON)  # running stats chosen to give net's affine map
                norm.running_mean.zero_()
                norm.running_var.fill_(1 - BN_EPSILON)
                norm.weight.data, norm.bias.data = net.bn_scale[i].float(), net.bn_shift[i].float()
                self.convs.append(conv)
                self.norms.append(norm)
                c_in = c_out
            self.classifier = nn.Linear(net.dense.numel() // 360, 360)
            self.classifier.weight.data = net.dense.float().reshape(-1, 360).T.contiguous()
            self.classifier.bias.data = net.dense_bias
            self.eval()

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames[:, None, :, None]
            for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
                width = conv.kernel_size[0]
                before = 254 if i == 0 else (width - 1) // 2
                after = 254 if i == 0 else width // 2
                x = norm(F.relu(conv(F.pad(x, (0, 0, before, after)))))
                x = F.max_pool2d(x, (2, 1))
            x = x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)  # Keras' (time, channel) flatten
            return torch.sigmoid(self.classifier(x))

    model = PlainCrepe()

    def run(frames: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(frames)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", default="full")
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length for (b) and (c)")
    parser.add_argument("--reference-seconds", type=float, default=5.0, help="excerpt length for (a)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, capacity {args.capacity}")
    rates = {p: gemm_gflops(p) for p in ("fp32", "bf16")}
    clip = test_signal(int(args.seconds * SAMPLE_RATE), SAMPLE_RATE)
    excerpt = clip[: int(args.reference_seconds * SAMPLE_RATE)]
    warm = clip[:SAMPLE_RATE]

    ours = {p: Crepe(capacity=args.capacity, precision=p) for p in ("fp32", "bf16")}
    for ext in ours.values():
        ext.load("cpu")
    reference = Crepe(capacity=args.capacity)
    reference.load("cpu")
    reference._net = plain_reference(ours["fp32"]._net)

    frames_clip = 1 + clip.shape[0] // HOP
    frames_excerpt = 1 + excerpt.shape[0] // HOP
    frames_30s = 1 + 30 * SAMPLE_RATE // HOP
    tflop = network_flop(ours["fp32"]._net) * frames_30s / 1e12
    floors = {p: tflop * 1e3 / rates[p] for p in rates}

    per_clip = 30.0 / args.seconds  # report seconds per 30-s clip
    reference.extract(warm)
    ref_s = best_seconds(lambda: reference.extract(excerpt), repeats=args.repeats, warmup=0)
    ref_s *= (frames_clip / frames_excerpt) * per_clip
    times = {}
    for p, ext in ours.items():
        ext.extract(warm)
        times[p] = best_seconds(lambda ext=ext: ext.extract(clip), repeats=args.repeats, warmup=0) * per_clip
    diff = np.abs(reference.activation(warm) - ours["fp32"].activation(warm)).max()

    print(f"GEMM 4096^3: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
    print(f"network: {tflop / frames_30s * 1e3:.2f} GFLOP per frame, {tflop:.2f} TFLOP per 30-s clip "
          f"({frames_30s} frames); floors {floors['fp32']:.1f} s fp32, {floors['bf16']:.1f} s bf16")
    print(f"{'':34s} {'s / 30-s clip':>13s} {'vs (a)':>7s} {'of floor':>9s}")
    print(f"{'(a) plain nn.Conv2d, fp32':34s} {ref_s:13.1f} {1.0:6.2f}x {floors['fp32'] / ref_s:8.0%}")
    print(f"{'(b) fstore, fp32':34s} {times['fp32']:13.1f} {ref_s / times['fp32']:6.2f}x "
          f"{floors['fp32'] / times['fp32']:8.0%}")
    print(f"{'(c) fstore, bf16':34s} {times['bf16']:13.1f} {ref_s / times['bf16']:6.2f}x "
          f"{floors['bf16'] / times['bf16']:8.0%}")
    print(f"max |activation (a) - (b)| on 1 s: {diff:.1e}")


if __name__ == "__main__":
    main()
