"""The OpenL3 mel256 CNN: Keras weights-file reader and a BN-folded channels-last torch forward pass.

The official file is a Keras *weights* file that openl3 loads topologically: the groups named
in ``layer_names`` that hold weights are paired, in order, with the model's weighted layers;
the names themselves differ between files and are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._keras import read_weighted_layers

BN_EPS = 1e-3
#: (in, out) channels of the eight 3x3 convs; a 2x2 max-pool follows convs 1, 3 and 5 (0-based)
CONVS = ((1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512))
POOL_AFTER = (1, 3, 5)


def _expected_shapes() -> list[tuple[tuple[int, ...], ...]]:
    """Per weighted layer, the shapes of its variables: input BN, then (conv, BN) pairs, last conv alone."""
    shapes: list[tuple[tuple[int, ...], ...]] = [((1,),) * 4]
    for i, (cin, cout) in enumerate(CONVS):
        shapes.append(((3, 3, cin, cout), (cout,)))
        if i < len(CONVS) - 1:
            shapes.append(((cout,),) * 4)
    return shapes


def read_keras_weights(path: str | Path) -> list[list[np.ndarray]]:
    """The 16 weighted layers of an OpenL3 mel256 Keras weights file, in file order.

    Returns
    -------
    list of list of np.ndarray
        ``[input BN, conv, BN, conv, BN, ..., conv]``; BN as (gamma, beta, moving_mean,
        moving_variance), conv as (kernel (3, 3, in, out) HWIO, bias (out,)), float32.

    Raises
    ------
    ValueError
        When the file does not hold exactly these layers and shapes (names the layer).
    """
    expected = _expected_shapes()
    layers = read_weighted_layers(path)
    if len(layers) != len(expected):
        raise ValueError(
            f"{path}: {len(layers)} layers with weights ({', '.join(n for n, _ in layers)}), "
            f"expected {len(expected)} for OpenL3 mel256 (input BN + 8 convs + 7 BNs)"
        )
    for k, ((name, arrays), shapes) in enumerate(zip(layers, expected)):
        got = tuple(a.shape for a in arrays)
        if got != shapes:
            raise ValueError(f"{path}: weighted layer {k} ({name!r}) has variable shapes {got}, expected {shapes}")
    return [arrays for _, arrays in layers]


def _bn_affine(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN as ``x * scale + shift`` (float64 for an exact fold)."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    return scale, beta - mean * scale


def build_plain_net(layers: list[list[np.ndarray]]):
    """The network as plain ``nn.Conv2d``/``nn.BatchNorm2d`` layers (NCHW), as a reference.

    Input (B, 1, 256, 199) dB, output (B, 512).
    """
    import torch
    from torch import nn

    def bn(arrays: list[np.ndarray]) -> nn.BatchNorm2d:
        m = nn.BatchNorm2d(arrays[0].shape[0], eps=BN_EPS)
        for t, a in zip((m.weight, m.bias, m.running_mean, m.running_var), arrays):
            t.data.copy_(torch.from_numpy(a))
        return m

    mods: list[nn.Module] = [bn(layers[0])]
    for i, (cin, cout) in enumerate(CONVS):
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        kernel, bias = layers[1 + 2 * i]
        conv.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        conv.bias.data.copy_(torch.from_numpy(bias))
        mods.append(conv)
        if i < len(CONVS) - 1:
            mods += [bn(layers[2 + 2 * i]), nn.ReLU()]
        if i in POOL_AFTER:
            mods.append(nn.MaxPool2d(2, 2))
    mods += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
    return nn.Sequential(*mods).eval()


class FastNet:
    """The network with every BN folded into the conv before it, run channels-last by oneDNN.

    Measured on this machine (2 cores, AVX-512 + AMX), ``F.conv2d`` on channels-last
    (NHWC-strided) tensors is oneDNN's direct/brgemm convolution: ~2x a plain NCHW ``nn.Conv2d``
    in fp32 and at the GEMM rate in bf16 (AMX), while explicit im2col GEMMs (or sums of per-tap
    GEMMs) lose 2-4x to the copies of their operands. Folding the BNs removes a full pass over
    every activation; on CPU each ReLU is fused into its conv. The first conv (1 input channel,
    0.2 % of the FLOPs, but the largest output) is one GEMM of the 9 shifted input planes by a
    (9, 64) weight, written straight into the channels-last layout in the compute dtype (oneDNN's
    1-channel conv plus the cast took 3.7x as long). Max-pool is the maximum of the four strided
    2x2 phases (``max_pool2d`` also writes int64 indices: 2.3x as long).

    Parameters
    ----------
    layers : list of list of np.ndarray
        :func:`read_keras_weights`' output.
    device : str
        torch device.
    dtype : torch.dtype
        Dtype of the convs (float32, bfloat16 or float16). The input BN stays float32; the first
        conv's input is rounded to ``dtype`` after it.
    """

    def __init__(self, layers: list[list[np.ndarray]], device: str, dtype: Any) -> None:
        import torch

        self.dtype = dtype
        scale, shift = _bn_affine(*layers[0])
        # the input BN stays separate: folded into conv 1 its shift would also reach the zero padding
        self.in_scale, self.in_shift = float(scale[0]), float(shift[0])
        self.weights: list[Any] = []
        self.biases: list[Any] = []  # None for the first conv, whose bias is a row of its weight
        for i in range(len(CONVS)):
            kernel, bias = (a.astype(np.float64) for a in layers[1 + 2 * i])
            if i < len(CONVS) - 1:
                s, t = _bn_affine(*layers[2 + 2 * i])
                kernel, bias = kernel * s, bias * s + t
            oihw = torch.from_numpy(kernel.transpose(3, 2, 0, 1).astype(np.float32))
            bias_t = torch.from_numpy(bias.astype(np.float32))
            if i == 0:  # (64, 1, 3, 3) -> (9 taps in (dy, dx) order + the bias row, 64) for the first conv's GEMM
                self.weights.append(torch.cat([oihw.reshape(oihw.shape[0], 9).t(), bias_t[None]]).to(device, dtype))
                self.biases.append(None)
                continue
            self.weights.append(oihw.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last))
            self.biases.append(bias_t.to(device=device, dtype=dtype))

    def __call__(self, db: Any) -> Any:
        """Embeddings of log-mel windows.

        Parameters
        ----------
        db : torch.Tensor [shape=(B, 256, 199), float32]

        Returns
        -------
        torch.Tensor [shape=(B, 512), float32]
        """
        x = self._first_conv(db * self.in_scale + self.in_shift)
        last = len(CONVS) - 1
        for i in range(1, len(CONVS)):
            x = self._conv(i, x, relu=i < last)
            if i in POOL_AFTER:
                x = _max_pool_2x2(x)
        return x.amax(dim=(2, 3)).float()

    def _first_conv(self, x: Any) -> Any:
        """Conv 1 + ReLU of (B, 256, 199) float32 as one GEMM; returns (B, 64, 256, 199) channels-last in ``dtype``."""
        import torch
        import torch.nn.functional as F

        batch, height, width = x.shape
        padded = F.pad(x, (1, 1, 1, 1)).to(self.dtype)
        planes = [padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
        taps = torch.stack([*planes, x.new_ones((), dtype=self.dtype).expand(batch, height, width)], dim=-1)
        y = taps.view(-1, 10) @ self.weights[0]  # the bias is the weight of a constant tap: no broadcast copy
        return y.view(batch, height, width, -1).permute(0, 3, 1, 2).relu_()

    def _conv(self, i: int, x: Any, relu: bool) -> Any:
        """Conv ``i`` (3x3, padding 1), with its ReLU fused into oneDNN's kernel on CPU.

        The fused kernel saves the ReLU's pass over the activation (6 % of a bf16 run);
        other devices run the conv and an in-place ReLU.
        """
        import torch
        import torch.nn.functional as F

        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weights[i], self.biases[i], [1, 1], [1, 1], [1, 1], 1, "relu" if relu else "none", [], ""
            )
        x = F.conv2d(x, self.weights[i], self.biases[i], padding=1)
        return F.relu_(x) if relu else x


def _max_pool_2x2(x: Any) -> Any:
    """``max_pool2d(x, 2, 2)`` (floor mode) as the maximum of the four 2x2 phases: no int64 indices written.

    Keeps the channels-last layout; equal to max-pool bit for bit.
    """
    import torch

    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    top = torch.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2])
    bottom = torch.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2])
    return torch.maximum(top, bottom)
