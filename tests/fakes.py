"""Small deterministic extractors for testing the store, pipeline and read API without real models."""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from dataclasses import dataclass
from typing import ClassVar, Sequence

from pathlib import Path

import numpy as np

from featurestore.extractors.base import Extractor, option, ExtractorConfig, Licenses, Output, TimeAxis, WeightFile, WeightsInfo


@dataclass(frozen=True)
class FakeConfig(ExtractorConfig):
    gain: float = option(1.0, "Factor applied to every output value.")


class FakeFrames(Extractor):
    """RMS and mean of 10-ms frames at 8 kHz (hop 80, t0 40): (T, 2), T = N // 80."""

    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "test extractor: framewise rms and mean"
    licenses: ClassVar[Licenses] = Licenses(code="MIT (tests)", weights="none (no weights)")
    Config: ClassVar[type[ExtractorConfig]] = FakeConfig
    rate: ClassVar[int] = 8000
    hop: ClassVar[int] = 80
    output: ClassVar[Output] = Output(TimeAxis(8000, 80, 40), dims=("time", "feature"),
                                      labels={"feature": ("rms", "mean")}, min_samples=80)

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        frames = wave[: self.n_frames(len(wave)) * self.hop].reshape(-1, self.hop)
        rms = np.sqrt((frames**2).mean(axis=1))
        return (self.config.gain * np.stack([rms, frames.mean(axis=1)], axis=1)).astype(np.float32)


class SlowFrames(FakeFrames):
    """The same at 10 Hz from 4 kHz input (hop 400, t0 0): (T,), for alignment tests."""

    name: ClassVar[str] = "slow"
    rate: ClassVar[int] = 4000
    hop: ClassVar[int] = 400
    output: ClassVar[Output] = Output(TimeAxis(4000, 400, 0), kind="activation", min_samples=400)

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return super()._extract(wave)[:, 0].copy()


class DeviceFrames(FakeFrames):
    """The same, declared to run on a GPU too (it computes on the CPU whatever the device): the model of a GPU
    run beside which CPU-only models run in their own threads."""

    name: ClassVar[str] = "devfake"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")


class Unobtainable(FakeFrames):
    """A model whose weights cannot be had here (like OpenL3 or MERT offline)."""

    name: ClassVar[str] = "unobtainable"

    @classmethod
    def weights_info(cls, config=None) -> WeightsInfo:
        return WeightsInfo("model.h5, downloaded on first use", False, how_to_provide="pass --unobtainable-weights PATH")

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        from featurestore.errors import WeightsUnavailable

        raise WeightsUnavailable(self.name, "model.h5 is not in the cache", cache_dir="/cache/fstore",
                                 how="pass --unobtainable-weights PATH")


@dataclass(frozen=True)
class WeightedConfig(FakeConfig):
    weights_path: str | None = option(None, "A local weights file: text holding the factor applied to the output "
                                      "(its sha256 is fingerprinted, not the path).", parse=str, fingerprint=False)


class WeightedFrames(FakeFrames):
    """The same scaled by a factor read from a local weights file, as OpenL3 with ``--openl3-weights PATH``:
    a group computed with weights that may later be gone or changed."""

    name: ClassVar[str] = "weighted"
    Config: ClassVar[type[ExtractorConfig]] = WeightedConfig

    @classmethod
    def weights_info(cls, config=None) -> WeightsInfo:
        chosen = getattr(config, "weights_path", None)
        return WeightsInfo("a local factor file", bool(chosen) and Path(chosen).is_file(), chosen,
                           how_to_provide="-o weighted.weights_path=PATH")

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        from featurestore.errors import WeightsUnavailable
        from featurestore.weights import sha256_file

        path = self.config.weights_path
        if not path or not Path(path).is_file():
            raise WeightsUnavailable(self.name, f"{path or 'no weights_path'}: no such file",
                                     how="-o weighted.weights_path=PATH")
        return (WeightFile(Path(path), sha256_file(path), path),)

    def _load(self, device: str) -> None:
        self._factor = float(self.weights()[0].path.read_text())

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        return (self._factor * super()._extract(wave)).astype(np.float32)


#: the module :class:`InterruptedLoad` imports when it loads
INTERRUPTED_IMPORT_ENV = "FSTORE_TEST_INTERRUPTED_IMPORT"


class InterruptedLoad(FakeFrames):
    """A model whose load imports the module named by $FSTORE_TEST_INTERRUPTED_IMPORT, as torch models import
    torch: a test makes that import raise KeyboardInterrupt, or the ImportError an interrupted import can
    leave ("initialization failed"), to stand for Ctrl-C while the models load."""

    name: ClassVar[str] = "interrupted"

    def _load(self, device: str) -> None:
        importlib.import_module(os.environ[INTERRUPTED_IMPORT_ENV])


#: where :class:`Counted` extractors log each computed song, and how long each computation takes (seconds)
COMPUTE_LOG_ENV, COMPUTE_S_ENV = "FSTORE_TEST_COMPUTE_LOG", "FSTORE_TEST_COMPUTE_S"
#: a file a counted computation waits for, once logged, before it returns: a test holds a run inside its first
#: song's compute (to kill it there, or to let another run start) and lets it go by creating the file
GATE_ENV = "FSTORE_TEST_GATE"


class Counted:
    """Mixin: after computing, wait $FSTORE_TEST_COMPUTE_S, append ``<model> <pid> <input digest>`` to
    $FSTORE_TEST_COMPUTE_LOG (tests count computations per song across processes), then wait until the file
    $FSTORE_TEST_GATE exists, if that variable is set."""

    name: ClassVar[str]

    def _extract(self, wave: np.ndarray) -> np.ndarray:
        out = super()._extract(wave)  # type: ignore[misc]
        time.sleep(float(os.environ.get(COMPUTE_S_ENV, "0")))
        with open(os.environ[COMPUTE_LOG_ENV], "a") as f:  # one short O_APPEND write per line
            f.write(f"{self.name} {os.getpid()} {hashlib.sha1(wave.tobytes()).hexdigest()[:16]}\n")
        gate = os.environ.get(GATE_ENV)
        deadline = time.monotonic() + 300
        while gate and not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate} never appeared")
            time.sleep(0.01)
        return out


class CountedFrames(Counted, FakeFrames):
    name: ClassVar[str] = "cfake"


class CountedSlow(Counted, SlowFrames):
    name: ClassVar[str] = "cslow"


FAKES = {"fake": "tests.fakes:FakeFrames", "slow": "tests.fakes:SlowFrames", "devfake": "tests.fakes:DeviceFrames",
         "unobtainable": "tests.fakes:Unobtainable", "weighted": "tests.fakes:WeightedFrames",
         "cfake": "tests.fakes:CountedFrames", "cslow": "tests.fakes:CountedSlow"}


#: ``python -c RUNNER extract ...`` is ``fstore extract`` with the counted extractors registered
COUNTED = ("cfake", "cslow")
RUNNER = ("import sys; from featurestore.extractors import registry; "
          f"[registry.register(n, t) for n, t in {dict((m, FAKES[m]) for m in COUNTED)!r}.items()]; "
          "from featurestore.cli import app; sys.argv[0] = 'fstore'; app()")


def counted_fstore(*args: str) -> list[str]:
    """The command line of ``fstore ARGS...`` with the counted extractors registered."""
    import sys

    return [sys.executable, "-c", RUNNER, *map(str, args)]


def counted_run(audio: str | os.PathLike[str], store: str, *extra: str, models: Sequence[str] = COUNTED) -> list[str]:
    """The command line of an ``fstore extract --skip-existing`` run of the counted extractors (``models``)."""
    return counted_fstore("extract", "--audio-dir", audio, "--store", store, "--models", ",".join(models),
                          "--skip-existing", *extra)


def counted_env(log: str | os.PathLike[str], compute_s: float, **extra: str) -> dict[str, str]:
    """Environment of :func:`counted_run`: this checkout importable, computations logged to ``log``,
    each taking ``compute_s`` seconds, a 0.5-s lease beat (stale leases free in 1.5 s), plus ``extra``."""
    from pathlib import Path

    from featurestore.store.leases import BEAT_ENV

    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
            COMPUTE_LOG_ENV: str(log), COMPUTE_S_ENV: str(compute_s), BEAT_ENV: "0.5", **extra}


def computes(log: str | os.PathLike[str]) -> list[tuple[str, int, str]]:
    """(model, pid, input digest) per computation :class:`Counted` logged, in order."""
    with open(log) as f:
        return [(m, int(pid), digest) for m, pid, digest in (line.split() for line in f.read().splitlines())]


def store_contents(store: str, storage_options: dict | None = None,
                   models: Sequence[str] = COUNTED) -> dict[tuple[str, str], tuple[np.ndarray, dict]]:
    """(model, song) → (array, attrs without the write time) of every complete array of ``models`` (the
    counted ones by default); asserts that no incomplete array is left."""
    from featurestore.store import FeatureStore

    s = FeatureStore(store, storage_options=storage_options)
    out = {}
    for model in models:
        assert s.songs(model, complete_only=False) == s.songs(model), "incomplete arrays left"
        for song in s.songs(model):
            arr = s.array(model, song)
            out[model, song] = arr[...], {k: v for k, v in arr.attrs.items() if k != "written"}
    return out


def assert_same_contents(got: dict, want: dict) -> None:
    """Same songs, arrays bit for bit, same attributes (but the write time)."""
    assert sorted(got) == sorted(want)
    for key, (data, attrs) in want.items():
        np.testing.assert_array_equal(got[key][0], data)
        assert got[key][1] == attrs, key
