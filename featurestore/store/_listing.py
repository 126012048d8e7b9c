"""List a store's nodes in bulk: one key listing, then every ``zarr.json`` below a prefix read concurrently.

Walking a group through zarr (``Group.members`` then ``.attrs`` per array) opens each node in turn,
several store round trips per song: minutes for 10,000 songs, far worse on an object store. The
metadata documents themselves are the truth (``complete`` is an array attribute written last), so
reading them directly is as correct as the walk, never stale, and needs no index to maintain.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Iterator

#: metadata documents read at once (small GETs: latency-bound on object stores, cheap locally)
CONCURRENCY = 64
METADATA = "zarr.json"


def _key(root: Any, prefix: str) -> str:
    """``prefix`` (a path inside the group ``root``) as a key of ``root``'s store."""
    base = root.store_path.path
    return f"{base}/{prefix}" if base else prefix


#: the key of a node document that stands for damage: its value says what (the node is an array whose
#: ``zarr.json`` is not JSON, or is missing beside its chunks)
DAMAGED = "damaged"
#: the folder of an array's chunks (Zarr v3's default chunk key encoding): <node>/c/<i>/<j>...
CHUNKS = "c"
_CHUNK_KEY = re.compile(r"^(.*)/c(?:/\d+)+$")


#: the cause of an array whose chunks lie in the store without their metadata
MISSING = "unreadable metadata: zarr.json is missing"


def damaged(cause: str) -> dict[str, Any]:
    return {"node_type": "array", DAMAGED: cause}


def parse(raw: bytes | None) -> dict[str, Any] | None:
    """A node's metadata document; None for an interrupted write (empty, or the start of a JSON object cut
    off: what a non-atomic writer killed mid-way leaves); a :func:`damaged` document for anything else that
    is not metadata (junk bytes, another document written over it)."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return damaged("unreadable metadata: zarr.json is not text")
        if not text.strip() or (text.lstrip().startswith("{") and "\x00" not in text):
            return None
        return damaged("unreadable metadata: zarr.json is not JSON")
    if not isinstance(doc, dict) or doc.get("node_type") not in ("array", "group"):
        return damaged("unreadable metadata: zarr.json is not a Zarr node")
    return doc


def _local_documents(base: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(path relative to ``base``, parsed metadata) of every node below ``base``, read in this thread
    (zarr's LocalStore hands each read to a worker thread, which costs more than the read itself);
    an array's chunk folders are not walked."""
    for folder, dirs, files in os.walk(base):
        if folder == base:
            continue
        if METADATA not in files:
            if CHUNKS in dirs:  # an array's chunks without its metadata
                dirs.clear()
                yield os.path.relpath(folder, base).replace(os.sep, "/"), damaged(MISSING)
            continue
        try:
            with open(os.path.join(folder, METADATA), "rb") as f:
                doc = parse(f.read())
        except FileNotFoundError:  # removed since the walk saw it
            continue
        if doc is not None and doc.get("node_type") == "array":
            dirs.clear()
        yield os.path.relpath(folder, base).replace(os.sep, "/"), doc


def _remote_documents(store: Any, start: str) -> list[tuple[str, dict[str, Any] | None]]:
    """The same through the store's async API: one listing, then up to :data:`CONCURRENCY` GETs at once."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.common import concurrent_map
    from zarr.core.sync import sync

    async def read(key: str) -> tuple[str, dict[str, Any] | None]:
        buf = await store.get(key, prototype=default_buffer_prototype())
        return key[len(start):-len(METADATA) - 1], None if buf is None else parse(buf.to_bytes())

    async def everything() -> list[tuple[str, dict[str, Any] | None]]:
        listed = [k async for k in store.list_prefix(start) if k.startswith(start)]
        keys = [k for k in listed if k.endswith("/" + METADATA)]
        nodes = {k[: -len(METADATA) - 1] for k in keys}
        # an array's chunks (<node>/c/<i>/<j>...) without its zarr.json
        chunked = {m.group(1) for k in listed if (m := _CHUNK_KEY.match(k))}
        found = await concurrent_map([(k,) for k in keys], read, limit=CONCURRENCY)
        return found + [(node[len(start):], damaged(MISSING)) for node in sorted(chunked - nodes)]

    return sync(everything())


def node_metadata(root: Any, prefix: str) -> dict[str, dict[str, Any] | None]:
    """Every node strictly below ``prefix`` in group ``root``: its path relative to ``prefix`` → its
    parsed ``zarr.json`` (``node_type``, ``attributes``, ...), or None when that document is
    truncated or not JSON (a write interrupted mid-way)."""
    from zarr.storage import LocalStore

    store = root.store
    start = _key(root, prefix).rstrip("/") + "/"
    if isinstance(store, LocalStore):
        documents: Iterable[tuple[str, dict[str, Any] | None]] = _local_documents(os.path.join(store.root, start))
    else:
        documents = _remote_documents(store, start)
    return {path: doc for path, doc in documents if path}


def prefix_size(root: Any, prefix: str) -> int:
    """Bytes stored under ``prefix``: from one walk on local disk, from one listing on fsspec stores (one
    request per thousand keys on S3), else zarr's per-key sizes."""
    from zarr.core.sync import sync
    from zarr.storage import LocalStore

    store = root.store
    key = _key(root, prefix).rstrip("/")
    if isinstance(store, LocalStore):
        return sum(os.path.getsize(os.path.join(folder, name))
                   for folder, _, files in os.walk(os.path.join(store.root, key)) for name in files)
    fs = getattr(store, "fs", None)
    if fs is not None and getattr(fs, "async_impl", False):
        found = sync(fs._find(f"{store.path}/{key}", detail=True, withdirs=False))
        return int(sum(info.get("size") or 0 for info in found.values()))
    return int(sync(store.getsize_prefix(key)))
