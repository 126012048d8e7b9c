"""OpenL3 (mel256 / music / 512): 512-d embeddings of 1-s windows every 0.1 s, shape (T, 512).

A port of openl3 0.4.2 with its default kapre frontend, without TensorFlow: the frontend
(STFT 2048/242, periodic Hann, end padding, |X|, Slaney mel-256 on the magnitude,
``10 log10`` minus the window's max, floor -80) is :mod:`._openl3_frontend`, the CNN and the
Keras weights reader :mod:`._openl3_net`.

Framing as ``get_audio_embedding(center=True, hop_size=0.1)``: 24000 zeros before the
signal, zeros after it up to a whole number of 4800-sample hops (or up to one full window),
windows of 48000. ``T = 1 + ceil(max(N - 24000, 0) / 4800)``; window ``i`` is centred on
sample ``4800 i`` of the original (t0 = 0, hop 0.1 s). A clip shorter than 0.5 s gives one
window, zero-padded, as openl3 does (openl3 also warns below 1 s).

Long files: windows are views of the padded signal and are framed, transformed and embedded
``WINDOW_BATCH`` at a time, so memory is bounded by one batch whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..weights import local_path
from ._openl3_weights import OPENL3_ENV, OPENL3_URL, openl3_cache, openl3_weights
from ..devices import MODEL_PRECISIONS
from .base import ExtractorConfig, Licenses, Output, Tolerance, TorchExtractor, TimeAxis, WeightFile, WeightsInfo, option

SAMPLE_RATE = 48000
WINDOW = 48000
HOP = 4800
EMBEDDING = 512
#: windows embedded per batch on a CPU (bounds memory: about 60 MB of activations per window in fp32)
WINDOW_BATCH = 16
#: on a GPU (about 4 GB in fp32, 2 GB in bf16): fewer, larger calls keep it busy
GPU_WINDOW_BATCH = 64


@dataclass(frozen=True)
class OpenL3Config(ExtractorConfig):
    """OpenL3 options (see each field's help)."""

    weights_path: str | None = option(None, "Local openl3_audio_mel256_music.h5 (else downloaded once into the cache); "
                                      "its sha256 is fingerprinted, not the path.", env=OPENL3_ENV,
                                      flag="--openl3-weights", parse=str, fingerprint=False)
    precision: str = option("fp32", "fp32 (parity with openl3), bf16 or fp16 for the convolutions after the first.",
                            choices=MODEL_PRECISIONS)


def n_frames(n_samples: int) -> int:
    """openl3's window count for ``n_samples`` at 48 kHz with center=True, hop 0.1 s."""
    return 1 + -(-max(n_samples - WINDOW // 2, 0) // HOP)


def frame_signal(wave: np.ndarray) -> np.ndarray:
    """openl3's windows as a read-only view.

    Parameters
    ----------
    wave : np.ndarray [shape=(N,), float32]

    Returns
    -------
    np.ndarray [shape=(n_frames(N), 48000), float32]
        Window ``i`` starts at sample ``4800 i - 24000`` of ``wave`` (zeros outside it).
    """
    t = n_frames(wave.shape[0])
    padded = np.zeros(WINDOW + (t - 1) * HOP, dtype=np.float32)
    padded[WINDOW // 2 : WINDOW // 2 + wave.shape[0]] = wave
    return np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::HOP]


class OpenL3(TorchExtractor):
    name: ClassVar[str] = "openl3"
    description: ClassVar[str] = "OpenL3 mel256/music (openl3 0.4.2, kapre frontend): 512-d embedding, 10 Hz"
    licenses: ClassVar[Licenses] = Licenses(code="MIT (openl3)", weights="CC BY 4.0 (openl3's model files)")
    Config: ClassVar[type[ExtractorConfig]] = OpenL3Config
    config: OpenL3Config
    output: ClassVar[Output] = Output(TimeAxis(sample_rate=SAMPLE_RATE, hop_samples=HOP, t0_samples=0),
                                      dims=("time", "feature"), sizes={"feature": EMBEDDING})

    def tolerance(self) -> Tolerance:
        """fp32: the parity test's cosine (per frame >= 0.99999), and every value within 1e-2 + 1e-2 of its
        frame's largest value: the log-magnitude frontend's 80 dB range reaches below float32's rounding of
        the FFT, so two correct fp32 runs (another CPU, a GPU) differ by up to 5e-3 of a frame's scale
        (tests/test_openl3.py). bf16/fp16: the bf16 accuracy gate, per-frame cosine >= 0.9999."""
        if self.config.precision == "fp32":
            return Tolerance(max_abs=1e-2, max_frame_rel=1e-2, min_cosine=0.99999)
        return Tolerance(min_cosine=0.9999)

    def n_frames(self, n_samples: int) -> int:
        return n_frames(n_samples)

    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        local = local_path((config if isinstance(config, OpenL3Config) else OpenL3Config()).weights_path)
        if local is not None:
            return WeightsInfo(f"local OpenL3 weights file {local}", local.is_file(), str(local),
                               "a Keras weights file in the openl3_audio_mel256_music.h5 layout")
        cached = openl3_cache()
        return WeightsInfo(
            f"official openl3_audio_mel256_music.h5 (CC BY 4.0) from {OPENL3_URL}, downloaded once into the cache",
            cached.is_file(),
            str(cached) if cached.is_file() else None,
            "downloaded on first use, or --openl3-weights PATH / FSTORE_OPENL3_WEIGHTS for a local file",
        )

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        path, digest, source = openl3_weights(self.config.weights_path)
        return (WeightFile(path, digest, source),)

    def _load(self, device: str) -> None:
        import torch

        from ._openl3_frontend import mel_filterbank
        from ._openl3_net import FastNet, read_keras_weights

        dtype = self.torch_dtype
        self._device = torch.device(device)
        self._net = FastNet(read_keras_weights(self.weights()[0].path), device, dtype)
        self._filterbank = torch.from_numpy(mel_filterbank()).to(self._device)

    def embed_windows(self, windows: Any) -> Any:
        """Embeddings of a batch of windows: (B, 48000) float32 tensor -> (B, 512) float32 tensor."""
        from ._openl3_frontend import melspectrogram_db

        return self._net(melspectrogram_db(windows.to(self._device), self._filterbank))

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return self._extract_batch([wave])[0]

    def _extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Windows of consecutive songs fill each network batch of ``WINDOW_BATCH`` (``GPU_WINDOW_BATCH`` on a
        GPU; short songs share one); every window is embedded on its own, so each song's result equals
        ``extract(song)``. Windows stay views of each song until their batch is stacked: memory is one batch
        whatever the lengths."""
        import torch

        framed = [frame_signal(wave) for wave in waves]
        outs = [np.empty((f.shape[0], EMBEDDING), dtype=np.float32) for f in framed]
        slots = [(song, i) for song, f in enumerate(framed) for i in range(f.shape[0])]
        size = GPU_WINDOW_BATCH if self._device.type == "cuda" else WINDOW_BATCH
        with torch.inference_mode():
            for start in range(0, len(slots), size):
                batch = slots[start : start + size]
                chunk = torch.from_numpy(np.stack([framed[song][i] for song, i in batch]))
                for (song, i), row in zip(batch, self.embed_windows(chunk).cpu().numpy()):
                    outs[song][i] = row
        return outs

__all__ = ["OpenL3", "OpenL3Config", "frame_signal", "n_frames"]
