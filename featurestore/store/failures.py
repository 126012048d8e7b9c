"""Recorded failures: why a (song, model) pair could not be computed.

One Zarr group per pair, ``_failures/<model>/<node>``, whose attributes say what failed
and why; a pair's own node means recording one never rewrites shared metadata. Nested song
ids nest their nodes (``c/x`` lies inside ``c``), so a node may hold another song's record
below its own: clearing one removes only its own. The pipeline records and clears them,
``--retry-failed`` and the read API list them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from ._listing import node_metadata
from ..errors import InvalidSongId
from .layout import FAILURES, now_iso, validate_song_id
from .remote import store_errors

__all__ = ["FAILURES", "Failures", "failure_node"]


def failure_node(song_id: str) -> str:
    """Where a (song, model) failure is recorded under ``_failures/<model>/``: the song id, or for an id
    that is not a valid path a name derived from it, the same in every process and export."""
    try:
        return validate_song_id(song_id)
    except InvalidSongId:
        return f"_invalid/{hashlib.sha1(song_id.encode()).hexdigest()}"


class Failures:
    """The failures recorded in one store's root group (``url`` names the store in errors)."""

    def __init__(self, root: Any, url: str) -> None:
        self.root = root
        self.url = url

    def record(self, model: str, song_id: str, error: str, error_type: str, source: Mapping[str, Any] | None) -> None:
        """Remember why (song, model) failed, replacing what an earlier run recorded for the pair."""
        attrs = {"model": model, "song_id": song_id, "error": error, "error_type": error_type, "time": now_iso()}
        if source is not None:
            attrs["source"] = dict(source)
        with store_errors(f"cannot record a failure in {self.url}"):
            self.root.require_group(f"{FAILURES}/{model}/{failure_node(song_id)}").attrs.update(attrs)

    def clear(self, model: str, song_id: str) -> None:
        """Forget the pair's failure (it has been computed since); no-op when none is recorded.

        A song's node is also the folder of the songs nested under its id (``c`` holds ``c/x``): when it
        has any, only its own record goes (its attributes), so theirs stay recorded."""
        path = f"{FAILURES}/{model}/{failure_node(song_id)}"
        with store_errors(f"cannot update {self.url}"):
            if path not in self.root:
                return
            node = self.root[path]
            if next(iter(node.keys()), None) is None:
                del self.root[path]
            else:
                node.attrs.put({})

    def clear_model(self, model: str) -> None:
        """Forget every failure of a model group (the group is being replaced)."""
        self._delete(f"{FAILURES}/{model}")

    def list(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every recorded failure (of ``model`` only, if given), as dicts with model, song_id, error,
        error_type, time, source, sorted by (model, song_id)."""
        # the nodes' metadata in bulk: opening node by node costs round trips per failure
        with store_errors(f"{self.url}/{FAILURES}: cannot list"):
            nodes = node_metadata(self.root, FAILURES if model is None else f"{FAILURES}/{model}")
        out = [doc["attributes"] for doc in nodes.values() if doc is not None and "error" in (doc.get("attributes") or {})]
        return sorted((a for a in out if model is None or a.get("model") == model), key=lambda a: (a["model"], a["song_id"]))

    def _delete(self, path: str) -> None:
        with store_errors(f"cannot update {self.url}"):
            if path in self.root:
                del self.root[path]
