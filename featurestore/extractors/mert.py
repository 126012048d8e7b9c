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

The first conv's GroupNorm normalises each channel over the whole input's time axis, so a
window would see statistics of the window only. With ``normalize="song"`` (the default) those
statistics are computed over the whole song (the first conv is cheap and streamed) and given to
every window, so windows see what one pass sees and only the attention context differs. A
song's windows all have the same length and run as one batch; :meth:`Mert.extract_batch` stacks
equal-length windows of several songs the same way (never padded: padding would enter those
statistics). With ``normalize="window"`` each window normalises the waveform and takes the
GroupNorm statistics on its own, as pre-training did on its 5-s crops.

Precision: bf16/fp16 run the weights and activations in that dtype (no autocast), except the
first conv layer and the positional convolution, which run in fp32 (see :mod:`._mert_net`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Sequence

import numpy as np

from ..weights import local_path, sha256_file
from ._mert_weights import MERT_CONFIG_FILES, MERT_ENV, MERT_REPO, MERT_REVISION, mert_cached_snapshot, mert_snapshot
from ._mert_hf import HOP, RECEPTIVE_FIELD, SAMPLE_RATE, build_model, read_do_normalize, read_snapshot_config
from ._mert_net import MertNet
from ..devices import MODEL_PRECISIONS
from .base import ExtractorConfig, Licenses, Output, Tolerance, TorchExtractor, TimeAxis, WeightFile, WeightsInfo, option

#: hidden size and layer count of MERT-v1-95M, used before a snapshot is at hand
_DEFAULT_HIDDEN = 768
_DEFAULT_LAYERS = 12
#: Wav2Vec2FeatureExtractor's variance floor
_NORM_EPS = 1e-7
_NORMALIZE = ("song", "window")
#: audio per model call (a batch of equal-length windows), on CPU and on CUDA: bounds the activations' memory
_BATCH_SECONDS = {False: 60.0, True: 480.0}


def normalize_layers(spec: Any) -> str | tuple[int, ...]:
    """``layers`` in its canonical form: "last", "all", or sorted distinct hidden-state indices.

    Accepts "last", "all", "6,7,8", an int or a sequence of ints. Which index "last" is depends
    on the snapshot's layer count, so it is resolved by :meth:`Mert.resolved_config`, where
    "last" and 12 (on a 12-layer model) become the same configuration.
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("last", "all"):
            return text
        parts: Any = text.split(",")
    else:
        parts = [spec] if isinstance(spec, int) else list(spec)
    try:
        indices = [int(part) for part in parts]
    except (TypeError, ValueError):
        raise ValueError(f"mert layers {spec!r}: use last, all, or comma-separated indices like 6,7,8") from None
    if not indices or len(set(indices)) != len(indices) or min(indices) < 0:
        raise ValueError(f"mert layers {spec!r}: indices must be distinct and non-negative")
    return tuple(sorted(indices))


@dataclass(frozen=True)
class MertConfig(ExtractorConfig):
    """MERT options (see each field's help)."""

    model_path: str | None = option(None, "Local MERT-v1-95M snapshot folder (else the Hugging Face cache/hub).",
                                    env=MERT_ENV, flag="--mert-model", parse=str, fingerprint=False)
    layers: str | tuple[int, ...] = option(
        "last", "Hidden states to store: last, all, or indices like 6,7,8 (0 = input of the first transformer layer).",
        flag="--mert-layers", parse=normalize_layers)
    precision: str = option("fp32", "fp32, bf16 or fp16 for the transformer.", choices=MODEL_PRECISIONS)
    window_s: float = option(30.0, "Seconds of audio per model call on long songs (at least 1).", parse=float)
    overlap_s: float = option(5.0, "Seconds of overlap between windows (at most half a window).", parse=float)
    normalize: str = option("song", "Waveform normalisation statistics: song (whole song) or window (each window).",
                            choices=_NORMALIZE)

    def validate(self) -> None:
        if not self.window_s >= 1.0:
            raise ValueError(f"window_s {self.window_s}: must be at least 1 s")
        if not 0.0 <= self.overlap_s <= self.window_s / 2:
            raise ValueError(f"overlap_s {self.overlap_s}: must be between 0 and half the window ({self.window_s} s)")


def parse_layers(layers: Any, num_hidden_layers: int) -> list[int]:
    """Hidden-state indices (ascending) that ``layers`` selects on a model with ``num_hidden_layers`` layers."""
    canonical = normalize_layers(layers)
    if canonical == "last":
        return [num_hidden_layers]
    if canonical == "all":
        return list(range(num_hidden_layers + 1))
    if max(canonical) > num_hidden_layers:
        raise ValueError(f"mert layers {layers!r}: this model has hidden states 0..{num_hidden_layers}")
    return list(canonical)


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

    A window of ``W`` frames spans ``320 (W - 1) + 400`` samples; a song longer than that is cut
    into windows of exactly that length (so a song's windows run as one batch). The fewest
    windows whose starts are at most ``W - O`` frames apart (``O`` = overlap in frames) are
    spread evenly from the song's start to a last window that holds the song's last frame (the
    < 320 samples after it belong to no frame), so every overlap is at least ``O`` frames (minus
    one for rounding). The kept ranges tile ``[0, n_frames(n_samples))`` exactly, cut in the
    middle of each overlap.
    """
    frames_w = max(1, round(window_s * SAMPLE_RATE / HOP))
    step = max(1, frames_w - round(overlap_s * SAMPLE_RATE / HOP))
    length = HOP * (frames_w - 1) + RECEPTIVE_FIELD
    if n_samples <= length:
        return [Window(0, n_samples, 0, n_frames(n_samples))]
    last = (n_samples - length) // HOP  # first frame of the window whose last frame is the song's
    count = 1 + -(-last // step)
    firsts = [round(i * last / (count - 1)) for i in range(count)] if count > 1 else [0]
    cuts = [0] + [(firsts[i + 1] + firsts[i] + frames_w) // 2 for i in range(count - 1)] + [last + frames_w]
    return [Window(HOP * f, HOP * f + length, cuts[i], cuts[i + 1]) for i, f in enumerate(firsts)]


class Mert(TorchExtractor):
    name: ClassVar[str] = "mert"
    description: ClassVar[str] = "MERT-v1-95M (transformers HubertModel): hidden states, 768-d, 75 fps"
    licenses: ClassVar[Licenses] = Licenses(code="Apache-2.0 (transformers' HubertModel)",
                                            weights="CC BY-NC 4.0 (m-a-p/MERT-v1-95M model card): non-commercial")
    Config: ClassVar[type[ExtractorConfig]] = MertConfig
    config: MertConfig
    #: 2: song-wide first-GroupNorm statistics, equal-length windows, bf16 weights
    implementation_version: ClassVar[str] = "2"

    # -- description -----------------------------------------------------------------------------
    @cached_property
    def _arch(self) -> tuple[int, int]:
        """(hidden size, transformer layers) of the chosen snapshot, read from its config.json when local."""
        folder = local_path(self.config.model_path)
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

    def resolved_config(self) -> dict[str, Any]:
        """The options with ``layers`` as the hidden-state indices of this snapshot ("last" = 12 on MERT-v1-95M)."""
        return {**super().resolved_config(), "layers": list(self.layer_indices)}

    @property
    def output(self) -> Output:
        """(T, hidden) for one layer, (L, T, hidden) with a ``layer`` coordinate for several."""
        clock = TimeAxis(sample_rate=SAMPLE_RATE, hop_samples=HOP, t0_samples=RECEPTIVE_FIELD // 2)
        layers = {} if len(self.layer_indices) == 1 else {"layer": tuple(self.layer_indices)}
        return Output(clock, dims=("layer", "time", "feature") if layers else ("time", "feature"), labels=layers,
                      sizes={"feature": self._arch[0]}, min_samples=RECEPTIVE_FIELD)

    def tolerance(self) -> Tolerance:
        """fp32: the parity test's bound (tests/test_mert.py): every value of every stored layer within 1e-4.
        bf16/fp16: the bf16 accuracy gate, per-frame cosine >= 0.999 on every stored layer."""
        if self.config.precision == "fp32":
            return Tolerance(max_abs=1e-4)
        return Tolerance(min_cosine=0.999)

    def n_frames(self, n_samples: int) -> int:
        return n_frames(n_samples)

    # -- weights ---------------------------------------------------------------------------------
    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        local = local_path((config if isinstance(config, MertConfig) else MertConfig()).model_path)
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
        model = build_model(config, self.weights()[0].path, device)
        self._net = MertNet(model, self.torch_dtype)
        self._do_normalize = read_do_normalize(self._folder)
        self._device = torch.device(device)
        self._batch_samples = int(_BATCH_SECONDS[self._device.type == "cuda"] * SAMPLE_RATE)

    @staticmethod
    def _statistics(x: Any) -> tuple[float, float]:
        """(mean, sqrt(variance + 1e-7)) of a 1-D float32 tensor: Wav2Vec2FeatureExtractor's normalisation."""
        import torch

        var, mean = torch.var_mean(x, correction=0)
        return float(mean), float(torch.sqrt(var + _NORM_EPS))

    def _jobs(self, song: int, wave: np.ndarray) -> list[_Job]:
        """The model calls of one song: its windows, normalised, with the first GroupNorm's song statistics."""
        import torch

        x = torch.from_numpy(wave)
        windows = plan_windows(wave.shape[0], self.config.window_s, self.config.overlap_s)
        by_song = self.config.normalize == "song"
        offset, scale = self._statistics(x) if self._do_normalize and by_song else (0.0, 1.0)
        # one window is the whole song: its own statistics are the song's
        stats = None
        if by_song and len(windows) > 1 and self._net.song_stats_apply:
            stats = self._net.norm_stats(x.to(self._device), offset, scale)
        jobs = []
        for w in windows:
            segment = x[w.start : w.stop]
            if self._do_normalize:
                segment = (segment - offset) / scale if by_song else (segment - (s := self._statistics(segment))[0]) / s[1]
            jobs.append(_Job(song, w, segment, stats))
        return jobs

    def _run(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Features of validated songs; equal-length windows (of one song or several) share model calls."""
        import torch

        outs = [np.empty((len(self.layer_indices), n_frames(w.shape[0]), self._arch[0]), np.float32) for w in waves]
        with torch.inference_mode():
            groups: dict[tuple[int, bool], list[_Job]] = {}
            for song, wave in enumerate(waves):
                for job in self._jobs(song, wave):
                    groups.setdefault((len(job.segment), job.stats is None), []).append(job)
            for (length, _), jobs in groups.items():
                size = max(1, self._batch_samples // length)
                for i in range(0, len(jobs), size):
                    self._run_batch(jobs[i : i + size], outs)
        return [out[0] if len(self.layer_indices) == 1 else out for out in outs]

    def _run_batch(self, jobs: list[_Job], outs: list[np.ndarray]) -> None:
        """One model call on equal-length windows; their kept frames written into ``outs``."""
        import torch

        batch = torch.stack([job.segment for job in jobs]).to(self._device)
        stats = None
        if jobs[0].stats is not None:
            stats = tuple(torch.stack(parts) for parts in zip(*(job.stats for job in jobs)))
        states = self._net.hidden_states(batch, self.layer_indices, stats).cpu().numpy()
        for job, state in zip(jobs, states):
            w = job.window
            outs[job.song][:, w.keep_from : w.keep_to] = state[:, w.keep_from - w.first_frame : w.keep_to - w.first_frame]

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return self._run([wave])[0]

    def _extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Windows of the same length (a long song's windows; songs of equal length) share model calls,
        up to ``_BATCH_SECONDS`` of audio; windows of different lengths are never padded into one call
        (the first GroupNorm's statistics would include the padding)."""
        return self._run(list(waves))

@dataclass(frozen=True)
class _Job:
    """One window of one song, normalised, ready for the model."""

    song: int
    window: Window
    segment: Any  # torch.Tensor (n,), float32
    stats: tuple[Any, Any] | None  # the first GroupNorm's song statistics, or None for the window's own


__all__ = ["Mert", "MertConfig", "Window", "n_frames", "normalize_layers", "parse_layers", "plan_windows"]
