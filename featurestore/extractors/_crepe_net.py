"""CREPE's network (marl/crepe 0.0.16) written as plain GEMMs over batches of frames.

Why not ``nn.Conv2d``: CREPE's cost is its "same" convolutions (2.82 GFLOP per frame at full
capacity, 2.15 of them in conv2), and on CPU only GEMM-shaped work reaches the machine's
matmul rate (bf16 ``conv1d`` does not use AMX at all). So every layer here is a matrix product:

* activations of a batch of ``F`` frames are kept **time-major**: a contiguous
  ``(L, F, C)`` tensor, i.e. a ``(L*F, C)`` matrix whose rows ``t*F .. t*F+F-1`` are time step
  ``t`` of every frame;
* a "same" convolution with kernel width ``w`` is a sum over its taps ``k``: tap ``k`` (time
  shift ``s = k - pad_before``) adds ``X[t+s] @ W[k]`` to ``Y[t]`` for the time steps where
  ``t+s`` is inside the frame. Because time is the slow axis, those rows are one contiguous
  block of ``X`` and one of ``Y`` for all frames at once, so each tap is a single 2-D GEMM
  (``addmm_`` into the output, no copies), and the zero padding is simply never computed;
  taps that only ever see padding (``|s| >= L``, frequent in the short late layers) are skipped;
* conv1 (stride 4 on the 1024 raw samples) is one GEMM on an im2col matrix built from a
  strided view of the padded frames.

The arithmetic is Keras': TF "same" padding (the extra zero after the signal for even
kernels), ReLU, then BatchNormalization in inference form with epsilon 1e-3, MaxPool (2, 1),
the (time, channel) flatten order into the classifier, sigmoid. Dropout is inactive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._keras import read_weighted_layers

#: capacity name -> crepe's capacity multiplier
CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
#: samples per frame the network sees
FRAME = 1024
#: pitch bins of the classifier
N_BINS = 360
#: Keras' BatchNormalization default, which crepe uses
BN_EPSILON = 1e-3
#: filters per layer are these times the capacity multiplier (1024, 128, 128, 128, 256, 512 at full)
_FILTER_FACTORS = (32, 4, 4, 4, 8, 16)
#: kernel widths along time
_WIDTHS = (512, 64, 64, 64, 64, 64)
#: conv1's stride; the others are 1
_STRIDE1 = 4
#: time steps after each conv (before its max-pool): 1024/4, then halved by each pool
_LENGTHS = (256, 128, 64, 32, 16, 8)


def read_keras_weights(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Arrays of a crepe Keras weights file by layer name (conv1..conv6, conv1-BN..conv6-BN,
    classifier), each in its ``weight_names`` order: kernel, bias; or gamma, beta, mean, variance."""
    return dict(read_weighted_layers(path))


def capacity_of(weights: dict[str, list[np.ndarray]]) -> str:
    """The capacity name whose layer sizes these weights have (conv1's filter count decides)."""
    filters = weights["conv1"][0].shape[-1]
    for name, mult in CAPACITIES.items():
        if _FILTER_FACTORS[0] * mult == filters:
            return name
    raise ValueError(f"conv1 has {filters} filters, which matches no CREPE capacity")


class CrepeNet:
    """CREPE's classifier from normalised 1024-sample frames to 360 sigmoid activations.

    Parameters
    ----------
    weights : dict[str, list[np.ndarray]]
        As returned by :func:`read_keras_weights`. Conv kernels may be stored as Conv1D
        ``(width, in, out)`` or Conv2D ``(width, 1, in, out)``.
    device : str
        torch device, "cpu" or "cuda[:N]".
    dtype : torch.dtype
        float32, bfloat16 or float16: the dtype of the GEMMs and of the stored activations.
        Normalisation of the frames, the classifier and the sigmoid stay in float32.
    """

    def __init__(self, weights: dict[str, list[np.ndarray]], device: str = "cpu", dtype: Any = None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float32 if dtype is None else dtype
        mult = CAPACITIES[capacity_of(weights)]
        self.filters = tuple(f * mult for f in _FILTER_FACTORS)

        def tensor(a: np.ndarray, dtype: Any) -> Any:
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, dtype)

        self.kernels = []  # layer i: (width, in, out) in the compute dtype
        self.biases = []  # (out,) compute dtype
        self.bn_scale = []  # (out,) compute dtype
        self.bn_shift = []
        self.pool_first = []  # per layer: all BN scales >= 0, so max-pool may come first
        channels_in = 1
        for i, (width, filters) in enumerate(zip(_WIDTHS, self.filters), start=1):
            kernel, bias = weights[f"conv{i}"]
            kernel = kernel.reshape(width, channels_in, filters)  # drops Conv2D's unit axis
            gamma, beta, mean, variance = (w.astype(np.float64) for w in weights[f"conv{i}-BN"])
            scale = gamma / np.sqrt(variance + BN_EPSILON)
            self.kernels.append(tensor(kernel, self.dtype))
            self.biases.append(tensor(bias, self.dtype))
            self.bn_scale.append(tensor(scale, self.dtype))
            self.bn_shift.append(tensor(beta - mean * scale, self.dtype))
            self.pool_first.append(bool(np.all(scale >= 0)))
            channels_in = filters
        dense, dense_bias = weights["classifier"]
        steps = _LENGTHS[-1] // 2
        if dense.shape != (steps * channels_in, N_BINS):
            raise ValueError(f"classifier kernel {dense.shape} does not fit {steps} x {channels_in} features")
        # Keras flattens the (time, channel) tensor with channel fastest: row t*C + c
        self.dense = tensor(dense.reshape(steps, channels_in, N_BINS), self.dtype)
        self.dense_bias = tensor(dense_bias, torch.float32)
        self.conv1_kernel = self.kernels[0].reshape(_WIDTHS[0], self.filters[0])

    # -- layers ----------------------------------------------------------------------------------
    def _conv1(self, frames: Any) -> Any:
        """conv1 as one GEMM.

        Parameters
        ----------
        frames : torch.Tensor [shape=(F, 1024), float32]

        Returns
        -------
        torch.Tensor [shape=(256, F, C1), compute dtype]
            Time-major conv1 output plus bias (before ReLU).
        """
        torch = self.torch
        n = frames.shape[0]
        width = _WIDTHS[0]
        # TF "same" with stride 4: 256 outputs need (256-1)*4 + 512 = 1532 samples, 254 zeros each side
        before = ((_LENGTHS[0] - 1) * _STRIDE1 + width - FRAME) // 2
        padded = torch.zeros(n, FRAME + 2 * before + 4, dtype=self.dtype, device=self.device)
        padded[:, before : before + FRAME] = frames
        row = padded.shape[1]
        cols = padded.as_strided((_LENGTHS[0], n, width), (_STRIDE1, row, 1))
        cols = cols.reshape(_LENGTHS[0] * n, width)  # the im2col copy, time-major rows
        out = torch.addmm(self.biases[0], cols, self.conv1_kernel)
        return out.view(_LENGTHS[0], n, self.filters[0])

    def _conv_same(self, x: Any, layer: int) -> Any:
        """A stride-1 "same" convolution as a sum over kernel taps of 2-D GEMMs.

        Parameters
        ----------
        x : torch.Tensor [shape=(L, F, C_in), compute dtype]
        layer : int
            0-based layer index (1..5).

        Returns
        -------
        torch.Tensor [shape=(L, F, C_out), compute dtype]
            Convolution plus bias (before ReLU).
        """
        length, n, c_in = x.shape
        kernel = self.kernels[layer]
        width, _, c_out = kernel.shape
        before = (width - 1) // 2  # TF "same": 31 before, 32 after for width 64
        rows = x.view(length * n, c_in)
        out = self.biases[layer].expand(length * n, c_out).contiguous()
        for k in range(width):
            s = k - before
            t0, t1 = max(0, -s), min(length, length - s)
            if t1 > t0:
                out[t0 * n : t1 * n].addmm_(rows[(t0 + s) * n : (t1 + s) * n], kernel[k])
        return out.view(length, n, c_out)

    def _relu_bn_pool(self, x: Any, layer: int) -> Any:
        """ReLU, BatchNormalization (inference), MaxPool (2, 1) along time.

        Where every BN scale is >= 0, ReLU and BN are non-decreasing maps (also after
        rounding), so pooling first gives bit-identical results on half the elements.

        Parameters
        ----------
        x : torch.Tensor [shape=(L, F, C)], may be modified in place

        Returns
        -------
        torch.Tensor [shape=(L // 2, F, C)]
        """
        pairs = x.view(x.shape[0] // 2, 2, *x.shape[1:])
        if self.pool_first[layer]:
            return self.torch.maximum(pairs[:, 0], pairs[:, 1]).relu_().mul_(self.bn_scale[layer]).add_(
                self.bn_shift[layer])
        x.relu_().mul_(self.bn_scale[layer]).add_(self.bn_shift[layer])
        return self.torch.maximum(pairs[:, 0], pairs[:, 1])

    def __call__(self, frames: Any) -> Any:
        """Activations of a batch of frames.

        Parameters
        ----------
        frames : torch.Tensor [shape=(F, 1024), float32]
            Frames already normalised to zero mean and unit std, on :attr:`device`.

        Returns
        -------
        torch.Tensor [shape=(F, 360), float32]
            Sigmoid outputs of the classifier, one per pitch bin.
        """
        torch = self.torch
        with torch.inference_mode():
            x = self._relu_bn_pool(self._conv1(frames.to(self.dtype)), 0)
            for layer in range(1, len(_WIDTHS)):
                x = self._relu_bn_pool(self._conv_same(x, layer), layer)
            # x: (4, F, C6); classifier row t*C6 + c, i.e. a sum over the 4 time steps
            logits = torch.zeros(x.shape[1], N_BINS, dtype=torch.float32, device=self.device)
            for t in range(x.shape[0]):
                logits += (x[t] @ self.dense[t]).float()
            return torch.sigmoid(logits + self.dense_bias)
