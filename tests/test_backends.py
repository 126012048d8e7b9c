"""Every store backend passes fstore's backend contract (``featurestore.testing.BackendContract``): Zarr on
local disk (opened read-only and for writing), in memory and on S3 (moto's server), and an HDF5 export.

Each class writes the contract's reference content through the store's write API; the HDF5 case exports
the local Zarr store holding it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore.export import export_hdf5
from featurestore.store import Capabilities, FeatureStore, H5Store, ReadBackend
from featurestore.testing import BackendContract, write_reference

from .helpers import moto_s3


class ZarrContract(BackendContract):
    """A Zarr store holding the reference content, opened in :attr:`mode`: writable follows the mode; local
    disk, memory and S3 all create keys exclusively."""

    mode = "r"

    @property
    def expected_capabilities(self) -> Capabilities:
        return Capabilities(writable=self.mode != "r", exclusive_create=True)

    def url(self, workdir: Path) -> str:
        return str(workdir / "features.zarr")

    def make_backend(self, workdir: Path, storage_options: dict[str, Any] | None) -> ReadBackend:
        url = self.url(workdir)
        write_reference(FeatureStore(url, mode="a", storage_options=storage_options))
        return FeatureStore(url, mode=self.mode, storage_options=storage_options)


class TestLocalZarr(ZarrContract):
    pass


class TestLocalZarrWritable(ZarrContract):
    mode = "r+"


class TestMemoryZarr(ZarrContract):
    def url(self, workdir: Path) -> str:
        return f"memory://fstore-backends/{workdir.name}/features.zarr"  # the test folder's name: one per class


class TestS3Zarr(ZarrContract):
    @pytest.fixture(scope="class")
    @classmethod
    def storage_options(cls) -> Iterator[dict[str, Any]]:
        pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'fstore[s3]')")
        pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")
        with moto_s3("fstore-backends") as options:
            yield options

    def url(self, workdir: Path) -> str:
        return f"s3://fstore-backends/{workdir.name}/features.zarr"


class TestHDF5Export(BackendContract):
    expected_capabilities = Capabilities(writable=False, exclusive_create=False)
    holds_incomplete = False

    def make_backend(self, workdir: Path, storage_options: dict[str, Any] | None) -> ReadBackend:
        store = FeatureStore(str(workdir / "features.zarr"), mode="a")
        write_reference(store)
        export_hdf5(store, workdir / "features.h5")
        return H5Store(workdir / "features.h5")
