"""How fstore computes a MERT ``HubertModel``: one dtype throughout, the conv front end as GEMMs.

:class:`MertNet` wraps the ``HubertModel`` that :mod:`._mert_hf` builds from a snapshot. It
keeps transformers' transformer layers as they are and replaces two pieces with equivalent
computations that are faster on CPUs and allow song-wide statistics:

- the first conv layer (1 input channel, kernel 10, stride 5, GroupNorm with one channel per
  group, GELU): its GroupNorm statistics are computed in closed form from the 10 x 10 second
  moments of the waveform's windows (float64, streamed), folded into the conv's weight and
  bias, and the layer runs as one float32 GEMM per block of frames, written out in the compute
  dtype. The statistics can be the whole song's, so windows of a song see what one pass sees;
- the other conv layers (512 channels, kernel 3 or 2, stride 2): one GEMM each on an
  overlapping strided view of the (time, channel) layout. oneDNN's conv1d runs these shapes at
  ~200 GFLOP/s in bf16 on a 2-core AMX Xeon where this GEMM runs at ~500 (fp32: ~55 vs ~100).

Both compute the same sums in another order (float rounding only). Precision: weights and
activations are in the compute dtype (no autocast, no per-call weight casts) except the first
layer (float32, the most cancellation-prone step) and the positional convolution (a grouped
``conv1d``, ~2 % of the FLOPs) in float32 under every precision: torch 2.13's bf16 grouped
conv1d returns garbage on AMX CPUs for some shapes (8 channels per group, kernel 16; see
tests/test_bf16_kernels.py). Layer norms run in the compute dtype (accumulated in fp32).
"""

from __future__ import annotations

from typing import Any

#: samples per chunk when streaming a song's first-layer statistics (10 s at 24 kHz; a multiple of the stride)
STATS_CHUNK = 240000
#: frames per block of the first layer's GEMM: bounds its float32 temporary (32 MiB) whatever the input's length
FIRST_LAYER_ROWS = 16384


class MertNet:
    """A MERT ``HubertModel`` computed in ``dtype``, with the first layer's statistics selectable."""

    def __init__(self, model: Any, dtype: Any) -> None:
        import torch

        encoder, conv_layers = model.encoder, model.feature_extractor.conv_layers
        positional = encoder.pos_conv_embed
        # cast the transformer while the float32 parts and the conv stack are out of the model
        model.feature_extractor, encoder.pos_conv_embed = torch.nn.Identity(), torch.nn.Identity()
        self.model = model.to(dtype)
        norm = getattr(conv_layers[0], "layer_norm", None)
        self.first = _FirstLayer(conv_layers[0], dtype) if isinstance(norm, torch.nn.GroupNorm) else None
        model.feature_extractor = _FeatureEncoder(self.first, conv_layers, dtype)
        encoder.pos_conv_embed = _Float32(positional, dtype)

    @property
    def song_stats_apply(self) -> bool:
        """Whether the first layer has per-input statistics at all (``feat_extract_norm`` "group")."""
        return self.first is not None

    def norm_stats(self, wave: Any, offset: float = 0.0, scale: float = 1.0) -> tuple[Any, Any]:
        """The first layer's per-channel (mean, 1/sqrt(var + eps)) over a whole song.

        Parameters
        ----------
        wave : torch.Tensor [shape=(N,), float32]
            The song; the model sees ``(wave - offset) / scale`` (normalised chunk by chunk, no copy of the song).

        Returns
        -------
        (torch.Tensor [shape=(C,), float32], torch.Tensor [shape=(C,), float32])
        """
        return self.first.stats(*self.first.moments(wave, offset, scale))

    def hidden_states(self, batch: Any, layers: list[int], stats: tuple[Any, Any] | None = None) -> Any:
        """Hidden states ``layers`` of equal-length inputs.

        Parameters
        ----------
        batch : torch.Tensor [shape=(B, N), float32]
            Normalised waveforms at 24 kHz.
        layers : list of int
            Hidden-state indices (0 = transformer input; the last one alone skips the others).
        stats : (torch.Tensor [shape=(B, C)], torch.Tensor [shape=(B, C)]) or None
            The first layer's mean and 1/std per input; None: each input's own.

        Returns
        -------
        torch.Tensor [shape=(B, len(layers), T, hidden), float32]
        """
        import torch

        want_all = layers != [self.model.config.num_hidden_layers]
        if self.first is not None:
            self.first.given = stats
        try:
            out = self.model(batch, output_hidden_states=want_all)
        finally:
            if self.first is not None:
                self.first.given = None
        if want_all:
            return torch.stack([out.hidden_states[i] for i in layers], dim=1).float()
        return out.last_hidden_state[:, None].float()


def _FirstLayer(layer: Any, dtype: Any) -> Any:
    """HuBERT's first conv layer (conv, GroupNorm with one channel per group, activation) as folded GEMMs.

    The conv's output ``y_c = w_c . x_t + b_c`` over the frames' sample windows ``x_t`` has mean
    ``w_c . m + b_c`` and variance ``w_c^T Cov w_c``, where ``m`` and ``Cov`` are the windows' mean
    and covariance (k x k). With them, ``GroupNorm(y)_c = x_t . (w_c g_c) + beta_c + (b_c - mean_c) g_c``
    (``g_c = gamma_c / sqrt(var_c + eps)``): one GEMM with a folded weight and bias.
    Takes (B, N) float32; returns (B, T, C) in ``dtype``.
    """
    import torch

    class FirstLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            conv, norm = layer.conv, layer.layer_norm
            self.kernel, self.stride, self.eps = conv.kernel_size[0], conv.stride[0], norm.eps
            self.register_buffer("weight", conv.weight.detach()[:, 0, :].t().float().contiguous())  # (k, C)
            bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
            self.register_buffer("bias", bias.float())
            self.register_buffer("gamma", norm.weight.detach().float())
            self.register_buffer("beta", norm.bias.detach().float())
            self.activation = layer.activation
            self.given: tuple[torch.Tensor, torch.Tensor] | None = None

        def windows(self, wave: torch.Tensor) -> torch.Tensor:
            """The frames' sample windows of a 1-D wave, (T, k), as a view."""
            frames = (wave.shape[0] - self.kernel) // self.stride + 1
            return wave.as_strided((frames, self.kernel), (self.stride, 1))

        def moments(self, wave: torch.Tensor, offset: float = 0.0, scale: float = 1.0) -> tuple[int, Any, Any]:
            """(frames, sum of windows (k,), sum of window outer products (k, k)) of ``(wave - offset) / scale``, float64."""
            k, s = self.kernel, self.stride
            total = torch.zeros(k, dtype=torch.float64, device=wave.device)
            outer = torch.zeros(k, k, dtype=torch.float64, device=wave.device)
            count = 0
            for start in range(0, max(1, wave.shape[0] - k + 1), STATS_CHUNK):
                # frames j with s*j in [start, start + STATS_CHUNK): samples up to start + STATS_CHUNK - s + k
                chunk = (wave[start : start + STATS_CHUNK - s + k].double() - offset) / scale
                x = self.windows(chunk)
                total += x.sum(dim=0)
                outer += x.T @ x
                count += x.shape[0]
            return count, total, outer

        def stats(self, count: int, total: Any, outer: Any) -> tuple[Any, Any]:
            """Per-channel (mean, 1/sqrt(var + eps)) of the conv's output from the windows' moments, float32."""
            m = total / count
            cov = outer / count - torch.outer(m, m)
            w = self.weight.double()
            mean = m @ w + self.bias.double()
            var = ((cov @ w) * w).sum(dim=0).clamp_min(0)
            return mean.float(), (var + self.eps).rsqrt().float()

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            frames = (batch.shape[1] - self.kernel) // self.stride + 1
            out = torch.empty(batch.shape[0], frames, self.weight.shape[1], dtype=dtype, device=batch.device)
            block = torch.empty(min(frames, FIRST_LAYER_ROWS), self.weight.shape[1], device=batch.device)
            for i, wave in enumerate(batch.float()):
                mean, inv_std = (s[i] for s in self.given) if self.given is not None else self.stats(*self.moments(wave))
                gain = inv_std * self.gamma
                # the bias as one more weight row against a column of ones: a plain GEMM, no bias broadcast per block
                weight = torch.cat([self.weight * gain, (self.beta + (self.bias - mean) * gain)[None]])
                x = torch.cat([self.windows(wave), wave.new_ones(frames, 1)], dim=1)
                for r in range(0, frames, FIRST_LAYER_ROWS):
                    rows = block[: min(FIRST_LAYER_ROWS, frames - r)]
                    torch.mm(x[r : r + rows.shape[0]], weight, out=rows)
                    out[i, r : r + rows.shape[0]] = self.activation(rows)
            return out

    return FirstLayer()


def _GemmConv(layer: Any, dtype: Any) -> Any:
    """A later conv layer (conv, optional LayerNorm over channels, activation) as one GEMM, (B, T, C) -> (B, T', C)."""
    import torch

    class GemmConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            conv = layer.conv
            self.kernel, self.stride = conv.kernel_size[0], conv.stride[0]
            # weight[out, in, k] -> [k * in, out]: rows in the order of a window's (time, channel) elements
            unfolded = conv.weight.detach().permute(2, 1, 0).reshape(-1, conv.out_channels)
            self.register_buffer("weight", unfolded.to(dtype).contiguous())
            self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))
            norm = getattr(layer, "layer_norm", None)  # a LayerNorm over channels ("layer" mode), or none
            self.norm = None if norm is None else norm.to(dtype)
            self.activation = layer.activation

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, length, channels = x.shape
            frames = (length - self.kernel) // self.stride + 1
            windows = x.as_strided((batch, frames, self.kernel * channels), (length * channels, self.stride * channels, 1))
            y = torch.matmul(windows, self.weight)
            if self.bias is not None:
                y = y + self.bias
            if self.norm is not None:
                y = self.norm(y)
            return self.activation(y)

    return GemmConv()


def _FeatureEncoder(first: Any, conv_layers: Any, dtype: Any) -> Any:
    """``HubertFeatureEncoder``'s computation: (B, N) float32 -> (B, C, T) in ``dtype``.

    ``first`` is the folded first layer, or None to run the model's own first layer in float32
    (configs without a GroupNorm there).
    """
    import torch

    class FeatureEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = first if first is not None else _Float32(conv_layers[0], dtype)
            self.channels_first = first is None
            self.layers = torch.nn.ModuleList(_GemmConv(layer, dtype) for layer in conv_layers[1:])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.first(x[:, None]).transpose(1, 2).contiguous() if self.channels_first else self.first(x)
            for layer in self.layers:
                h = layer(h)
            return h.transpose(1, 2)

    return FeatureEncoder()


def _Float32(module: Any, out_dtype: Any) -> Any:
    """``module`` run in float32 (its input cast to float32), its output cast to ``out_dtype``."""
    import torch

    class Float32(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.float()).to(out_dtype)

    return Float32(module)
