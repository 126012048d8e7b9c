"""Bytes per minute of audio that each model's arrays take in a store, at float32 and float16.

    python bench/bench_storage.py features.zarr            # fstore's compressor and chunks
    python bench/bench_storage.py features.zarr --compare  # + the alternatives it was chosen from
    python bench/bench_storage.py features.zarr --checksum # fstore's codecs with and without the crc32c checksum

Every complete array of every group is read back as float32 and written again into memory with
fstore's chunking and each compressor setting; the figures count the compressed chunks only
(each song adds about 1 KiB of metadata on disk).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import featurestore as fs
from featurestore.store.layout import CHECKSUM, COMPRESSORS, time_chunk

ALTERNATIVES = {
    **{f"zstd {level}": ({"name": "zstd", "configuration": {"level": level}},) for level in (0, 1, 3, 9)},
    **{f"blosc {cname} {clevel} {shuffle}": ({"name": "blosc", "configuration": {"cname": cname, "clevel": clevel, "shuffle": shuffle}},)
       for cname, clevel in (("zstd", 3), ("zstd", 5), ("lz4", 5)) for shuffle in ("shuffle", "bitshuffle")},
}


def stored_bytes(data: np.ndarray, time_axis: int, compressors: tuple) -> tuple[int, float, float]:
    """(bytes of the compressed chunks, seconds to write them, seconds to read them back) for ``data``
    written like fstore writes it (best of 3 each)."""
    import zarr
    from zarr.core.sync import sync
    from zarr.storage import MemoryStore

    mem = MemoryStore()
    arr = zarr.create_array(mem, name="a", shape=data.shape, dtype=data.dtype, compressors=compressors,
                            chunks=time_chunk(data.shape, time_axis, data.itemsize))
    write = read = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        arr[...] = data
        write = min(write, time.perf_counter() - start)
        start = time.perf_counter()
        arr[...]
        read = min(read, time.perf_counter() - start)
    return int(sync(mem.getsize_prefix("a")) - sync(mem.getsize("a/zarr.json"))), write, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--compare", action="store_true", help="also measure the alternative compressor settings")
    parser.add_argument("--checksum", action="store_true", help="fstore's codecs with and without the crc32c checksum")
    args = parser.parse_args()
    store = fs.open_store(args.store)
    settings = {"fstore (blosc zstd 5 shuffle)": COMPRESSORS, **(ALTERNATIVES if args.compare else {})}
    if args.checksum:
        settings = {"blosc zstd 5 shuffle": COMPRESSORS, "blosc zstd 5 shuffle + crc32c": (*COMPRESSORS, CHECKSUM)}
    for model in store.models():
        songs = [store.load(song, model) for song in store.songs(model)]
        minutes = sum(da.attrs["duration_s"] for da in songs) / 60
        raw = sum(da.size * 4 for da in songs)
        print(f"{model}: {len(songs)} songs, {minutes * 60:.1f} s of audio, dims {songs[0].dims}; "
              f"float32 raw {raw / minutes / 1024:.1f} KiB/min")
        for name, compressors in settings.items():
            for dtype in ("float32", "float16"):
                results = [stored_bytes(da.values.astype(dtype), da.dims.index("time"), compressors) for da in songs]
                size, write, read = (sum(r[i] for r in results) for i in range(3))
                print(f"  {name:32s} {dtype}: {size / minutes / 1024:9.1f} KiB/min ({size} B), "
                      f"write {write * 1e3:7.2f} ms, read {read * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
