"""The OpenL3 mel256 CNN: Keras weights-file reader and a GEMM-shaped torch forward pass.

The official file is a Keras *weights* file that openl3 loads topologically: the groups named
in ``layer_names`` that hold weights are paired, in order, with the model's weighted layers;
the names themselves differ between files and are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


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
    import h5py

    expected = _expected_shapes()
    layers: list[tuple[str, list[np.ndarray]]] = []
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: not a Keras weights file (no 'layer_names' attribute)")
        for name in (_text(n) for n in root.attrs["layer_names"]):
            if name not in root:
                raise ValueError(f"{path}: layer {name!r} is listed in layer_names but missing from the file")
            group = root[name]
            names = [_text(n) for n in group.attrs.get("weight_names", [])]
            lacking = [n for n in names if n not in group]
            if lacking:
                raise ValueError(f"{path}: layer {name!r} lacks its variables {', '.join(lacking)}")
            if names:
                layers.append((name, [np.asarray(group[n], dtype=np.float32) for n in names]))
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
    """The network with BN folded into the convs and 3x3 convs run as plain GEMMs, channels-last.

    A 3x3 'same' conv over a zero-padded (B, H+2, W+2, C) image, flattened to rows of C, is a sum
    over the 9 taps of the rows shifted by ``dh*(W+2) + dw`` times a (C, O) matrix: every shifted
    operand is a contiguous slice, so each tap is one large GEMM (AMX-friendly in bf16). Taps of a
    kernel row are concatenated along K when C is small, to keep the GEMMs efficient. Rows that
    fall on the padding are computed and discarded (a few percent).

    Parameters
    ----------
    layers : list of list of np.ndarray
        :func:`read_keras_weights`' output.
    device : str
        torch device.
    dtype : torch.dtype
        Dtype of the convs 2-8 (float32, bfloat16 or float16). The input BN and the first conv
        (1 input channel, K = 9) stay float32.
    """

    def __init__(self, layers: list[list[np.ndarray]], device: str, dtype: Any) -> None:
        import torch

        self.dtype = dtype
        scale, shift = _bn_affine(*layers[0])
        self.in_scale, self.in_shift = float(scale[0]), float(shift[0])
        self.weights: list[Any] = []
        self.biases: list[Any] = []
        for i, (cin, cout) in enumerate(CONVS):
            kernel, bias = (a.astype(np.float64) for a in layers[1 + 2 * i])
            if i < len(CONVS) - 1:
                s, t = _bn_affine(*layers[2 + 2 * i])
                kernel, bias = kernel * s, bias * s + t
            group = 9 if cin == 1 else 3 if cin <= 64 else 1
            taps = kernel.reshape(9 // group, group * cin, cout)  # HWIO -> (tap groups, K, O)
            wdtype = torch.float32 if i == 0 else dtype
            self.weights.append(torch.from_numpy(taps.astype(np.float32)).to(device=device, dtype=wdtype))
            self.biases.append(torch.from_numpy(bias.astype(np.float32)).to(device=device, dtype=wdtype))

    @staticmethod
    def _conv(x: Any, weight: Any, bias: Any) -> Any:
        """3x3 'same' conv of channels-last ``x`` (B, H, W, C) -> (B, H, W, O)."""
        import torch
        import torch.nn.functional as F

        b, h, w, c = x.shape
        groups, k, o = weight.shape
        per = k // c  # taps per group: 9 (one GEMM), 3 (one per kernel row) or 1
        wp = w + 2
        flat = F.pad(x, (0, 0, 1, 1, 1, 1)).reshape(-1, c)
        if per == 9:
            offsets = [dh * wp + dw for dh in range(3) for dw in range(3)]
            rows = flat.shape[0] - offsets[-1]
            cols = torch.cat([flat[s : s + rows] for s in offsets], dim=1)
            starts = [0]
        elif per == 3:
            rows = flat.shape[0] - 2
            cols = torch.cat([flat[s : s + rows] for s in range(3)], dim=1)
            starts = [0, wp, 2 * wp]
        else:
            cols = flat
            starts = [dh * wp + dw for dh in range(3) for dw in range(3)]
        n = cols.shape[0] - starts[-1]
        out = torch.addmm(bias, cols[starts[0] : starts[0] + n], weight[0])
        for g in range(1, groups):
            out.addmm_(cols[starts[g] : starts[g] + n], weight[g])
        out = F.pad(out, (0, 0, 0, b * (h + 2) * wp - n))
        return out.view(b, h + 2, wp, o)[:, :h, :w]

    def __call__(self, db: Any) -> Any:
        """Embeddings of log-mel windows.

        Parameters
        ----------
        db : torch.Tensor [shape=(B, 256, 199), float32]

        Returns
        -------
        torch.Tensor [shape=(B, 512), float32]
        """
        import torch.nn.functional as F

        x = (db * self.in_scale + self.in_shift).unsqueeze(-1)
        last = len(CONVS) - 1
        for i in range(len(CONVS)):
            x = self._conv(x, self.weights[i], self.biases[i])
            if i == 0:
                x = x.to(self.dtype)
            if i < last:
                x = F.relu(x)
            if i in POOL_AFTER:
                x = F.max_pool2d(x.permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)
        return x.amax(dim=(1, 2)).float()
