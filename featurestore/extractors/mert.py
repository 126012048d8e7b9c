"""MERT-v1-95M hidden states at 75 frames per second, through transformers' own ``HubertModel``.

The snapshot (the pinned ``m-a-p/MERT-v1-95M`` revision from the Hugging Face cache/hub, or a
local folder) is mapped onto ``HubertModel`` by :mod:`._mert_hf`; no code from the snapshot
runs. Input is 24 kHz mono, normalised to zero mean and unit variance (eps 1e-7) when the
snapshot's ``preprocessor_config.json`` says ``do_normalize``, as ``Wav2Vec2FeatureExtractor`` does.

Frames: ``T = (N - 400) // 320 + 1``; frame ``i`` is centred on sample ``320 i + 200`` (the
middle of its 400-sample receptive field): t0 = 1/120 s, hop = 1/75 s. Inputs shorter than 400
samples have no frame and raise :class:`AudioTooShort`.

Output: one hidden state, (T, hidden) with dims ("time", "feature"), or several,
(L, T, hidden) with dims ("layer", "time", "feature") and the indices as the ``layer``
coordinate. Index 0 is the transformer's input (projection + positional conv), index
``num_hidden_layers`` (12) the last layer.

Long audio: attention is quadratic in length (a 10-minute file in one pass asks for tens of
GB) and the model was pre-trained on 5-s contexts, so the song is processed in windows of
``window_s`` seconds overlapping by ``overlap_s``. Defaults 30 s / 5 s: a 30-s clip (the usual
preview length, MARBLE's MTG windows) is one pass, identical to calling the model on the whole
clip; a 5-s overlap gives every seam frame at least 2.5 s of context on each side (half the
pre-training context, three times the positional conv's 64-frame half-width) for 20 % more
compute. Windows start on the 320-sample frame grid, so a window's frames are exactly frames
of the whole song; in each overlap the frames before its middle come from the earlier window
and the rest from the later one, so the time axis is continuous and exact. Windows are spread
evenly, the last ending at the song's end. Memory is bounded by one window whatever the
length, plus the song and its output.

Windows cannot equal one pass exactly even far from a seam: the first conv's GroupNorm
normalises each channel over the whole input's time axis, so its statistics are per window
(as in pre-training, whose inputs were 5-s crops). For the same reason the waveform
normalisation hardly matters (a bias-free conv followed by that GroupNorm is invariant to the
input's offset and scale, up to the epsilons); it is still selectable, whole song (as MARBLE
does before its sliding windows) or per window (``normalize="window"``), and fingerprinted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from ..weights import (MERT_CONFIG_FILES, MERT_REPO, MERT_REVISION, mert_cached_snapshot, mert_local_path,
                       mert_snapshot, sha256_file)
from ._mert_hf import HOP, RECEPTIVE_FIELD, SAMPLE_RATE, build_model, read_do_normalize, read_snapshot_config
from ..devices import check_model_precision, torch_dtype
from .base import Extractor, ExtractorConfig, TimeAxis, WeightFile, WeightsInfo

#: hidden size and layer count of MERT-v1-95M, used before a snapshot is at hand
_DEFAULT_HIDDEN = 768
_DEFAULT_LAYERS = 12
#: Wav2Vec2FeatureExtractor's variance floor
_NORM_EPS = 1e-7
_NORMALIZE = ("song", "window")


@dataclass(frozen=True)
class MertConfig(ExtractorConfig):
    """MERT options.

    ``layers``: "last", "all", or comma-separated hidden-state indices ("6,7,8"; 0 = input of
    the first transformer layer). ``window_s``/``overlap_s``: the long-audio windows.
    ``normalize``: "song" (statistics of the whole song) or "window" (of each window).
    """

    model_path: str | None = field(default=None, metadata={"fingerprint": False})
    layers: str = "last"
    precision: str = "fp32"
    window_s: float = 30.0
    overlap_s: float = 5.0
    normalize: str = "song"

    def __post_init__(self) -> None:
        check_model_precision(self.precision)
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize {self.normalize!r}: use one of {', '.join(_NORMALIZE)}")
        if not self.window_s >= 1.0:
            raise ValueError(f"window_s {self.window_s}: must be at least 1 s")
        if not 0.0 <= self.overlap_s <= self.window_s / 2:
            raise ValueError(f"overlap_s {self.overlap_s}: must be between 0 and half the window ({self.window_s} s)")
        parse_layers(self.layers, None)


def parse_layers(spec: str, num_hidden_layers: int | None) -> list[int]:
    """Hidden-state indices for ``--mert-layers``: "last", "all" or "i,j,..." (sorted, unique).

    With ``num_hidden_layers`` None only the syntax is checked (and [] returned for last/all).
    """
    text = spec.strip().lower()
    if text in ("last", "all"):
        if num_hidden_layers is None:
            return []
        return [num_hidden_layers] if text == "last" else list(range(num_hidden_layers + 1))
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"mert layers {spec!r}: use last, all, or comma-separated indices like 6,7,8") from None
    if len(set(indices)) != len(indices) or min(indices) < 0:
        raise ValueError(f"mert layers {spec!r}: indices must be distinct and non-negative")
    if num_hidden_layers is not None and max(indices) > num_hidden_layers:
        raise ValueError(f"mert layers {spec!r}: this model has hidden states 0..{num_hidden_layers}")
    return sorted(indices)


@dataclass(frozen=True)
class Window:
    """One model call: samples ``[start, stop)``; its frames ``[keep_from, keep_to)`` (song frame indices) are stored."""

    start: int
    stop: int
    keep_from: int
    keep_to: int

    @property
    def first_frame(self) -> int:
        """Song index of the window's frame 0 (windows start on the frame grid)."""
        return self.start // HOP


def n_frames(n_samples: int) -> int:
    """Frames of ``n_samples`` at 24 kHz: ``(N - 400) // 320 + 1`` (0 below 400 samples)."""
    return max(0, (n_samples - RECEPTIVE_FIELD) // HOP + 1)


def plan_windows(n_samples: int, window_s: float, overlap_s: float) -> list[Window]:
    """Split ``n_samples`` into overlapping windows on the frame grid and say which frames each keeps.

    A window of ``W`` frames spans ``320 (W - 1) + 400`` samples. The fewest windows whose
    starts are at most ``W - O`` frames apart (``O`` = overlap in frames) are spread evenly
    from the song's start to a last window ending at the song's end, so every overlap is at
    least ``O`` frames (minus one for rounding). The kept ranges tile ``[0, n_frames(n_samples))``
    exactly, cut in the middle of each overlap.
    """
    frames_w = max(1, round(window_s * SAMPLE_RATE / HOP))
    step = max(1, frames_w - round(overlap_s * SAMPLE_RATE / HOP))
    length = HOP * (frames_w - 1) + RECEPTIVE_FIELD
    if n_samples <= length:
        return [Window(0, n_samples, 0, n_frames(n_samples))]
    last = -(-(n_samples - length) // HOP)  # first frame of the window that ends at the song's end
    count = 1 + -(-last // step)
    firsts = [round(i * last / (count - 1)) for i in range(count)]
    stops = [HOP * f + length for f in firsts[:-1]] + [n_samples]
    ends = [f + n_frames(stop - HOP * f) for f, stop in zip(firsts, stops)]
    cuts = [0] + [(firsts[i + 1] + ends[i]) // 2 for i in range(count - 1)] + [ends[-1]]
    return [Window(HOP * f, stop, cuts[i], cuts[i + 1]) for i, (f, stop) in enumerate(zip(firsts, stops))]


class Mert(Extractor):
    name: ClassVar[str] = "mert"
    description: ClassVar[str] = "MERT-v1-95M (transformers HubertModel): hidden states, 768-d, 75 fps"
    code_license: ClassVar[str] = "Apache-2.0 (transformers' HubertModel)"
    weights_license: ClassVar[str] = "CC BY-NC 4.0 (m-a-p/MERT-v1-95M model card): non-commercial"
    Config: ClassVar[type[ExtractorConfig]] = MertConfig
    config: MertConfig

    # -- description -----------------------------------------------------------------------------
    @cached_property
    def _arch(self) -> tuple[int, int]:
        """(hidden size, transformer layers) of the chosen snapshot, read from its config.json when local."""
        folder = mert_local_path(self.config.model_path)
        if folder is not None:
            try:
                cfg = read_snapshot_config(folder)
                return int(cfg.get("hidden_size", _DEFAULT_HIDDEN)), int(cfg.get("num_hidden_layers", _DEFAULT_LAYERS))
            except (OSError, ValueError):
                pass  # reported by weights() with the folder's name
        return _DEFAULT_HIDDEN, _DEFAULT_LAYERS

    @cached_property
    def layer_indices(self) -> list[int]:
        """Hidden-state indices stored, ascending."""
        return parse_layers(self.config.layers, self._arch[1])

    @property
    def time_axis(self) -> TimeAxis:
        return TimeAxis(sample_rate=SAMPLE_RATE, hop_samples=HOP, t0_samples=RECEPTIVE_FIELD // 2)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("time", "feature") if len(self.layer_indices) == 1 else ("layer", "time", "feature")

    @property
    def coords(self) -> dict[str, list]:
        return {} if len(self.layer_indices) == 1 else {"layer": list(self.layer_indices)}

    def dim_size(self, dim: str) -> int:
        if dim == "feature":
            return self._arch[0]
        return super().dim_size(dim)

    @property
    def min_samples(self) -> int:
        return RECEPTIVE_FIELD

    def n_frames(self, n_samples: int) -> int:
        return n_frames(n_samples)

    # -- weights ---------------------------------------------------------------------------------
    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        local = mert_local_path(getattr(config, "model_path", None))
        if local is not None:
            return WeightsInfo(f"local MERT snapshot {local}", (local / "config.json").is_file(), str(local),
                               "a folder with config.json, preprocessor_config.json and the weights")
        cached = mert_cached_snapshot()
        return WeightsInfo(
            f"Hugging Face {MERT_REPO} at revision {MERT_REVISION[:12]} (downloaded once into the hub cache)",
            cached is not None,
            str(cached) if cached else None,
            "downloaded on first use, or --mert-model PATH / FSTORE_MERT_MODEL for a local snapshot",
        )

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        """The weights file first, then config.json and preprocessor_config.json: both change the
        output (architecture, ``do_normalize``), so their digests are fingerprinted too."""
        folder, weights, digest, source = mert_snapshot(self.config.model_path)
        self._folder = folder
        configs = tuple(WeightFile(folder / name, sha256_file(folder / name), source) for name in MERT_CONFIG_FILES)
        return (WeightFile(weights, digest, source), *configs)

    # -- compute ---------------------------------------------------------------------------------
    def _load(self, device: str) -> None:
        import torch

        config = read_snapshot_config(self._folder)
        self._model = build_model(config, self.weights()[0].path, device)
        self._num_layers = int(config.get("num_hidden_layers", _DEFAULT_LAYERS))
        self._do_normalize = read_do_normalize(self._folder)
        self._device = torch.device(device)
        self._autocast = None if self.config.precision == "fp32" else torch_dtype(self.config.precision)

    @staticmethod
    def _statistics(x: Any) -> tuple[Any, Any]:
        """(mean, sqrt(variance + 1e-7)) of a 1-D float32 tensor: Wav2Vec2FeatureExtractor's normalisation."""
        import torch

        var, mean = torch.var_mean(x, correction=0)
        return mean, torch.sqrt(var + _NORM_EPS)

    def _hidden_states(self, segment: Any) -> np.ndarray:
        """Selected hidden states of one window, shape (L, frames, hidden), float32."""
        import torch

        x = segment[None].to(self._device)
        want_all = self.layer_indices != [self._num_layers]
        with torch.autocast(self._device.type, dtype=self._autocast or torch.float32, enabled=self._autocast is not None):
            out = self._model(x, output_hidden_states=want_all)
        if want_all:
            states = torch.stack([out.hidden_states[i][0] for i in self.layer_indices])
        else:
            states = out.last_hidden_state
        return states.float().cpu().numpy()

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        import torch

        n = wave.shape[0]
        out = np.empty((len(self.layer_indices), n_frames(n), self._arch[0]), dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(wave)
            # whole-song statistics are applied window by window: no normalised copy of the song
            song = self._statistics(x) if self._do_normalize and self.config.normalize == "song" else None
            for w in plan_windows(n, self.config.window_s, self.config.overlap_s):
                segment = x[w.start : w.stop]
                if self._do_normalize:
                    mean, scale = song or self._statistics(segment)
                    segment = (segment - mean) / scale
                states = self._hidden_states(segment)
                out[:, w.keep_from : w.keep_to] = states[:, w.keep_from - w.first_frame : w.keep_to - w.first_frame]
        return out[0] if len(self.layer_indices) == 1 else out


__all__ = ["Mert", "MertConfig", "Window", "n_frames", "parse_layers", "plan_windows"]
