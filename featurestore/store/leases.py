"""Song leases: which run works on which song, so concurrent runs on one store share the work.

A lease is the small file ``_leases/<song_id>/zarr.json`` (a Zarr group node whose
attributes say run, host, pid, time, beat). It is claimed by an exclusive create, which
only one run can win: ``O_CREAT|O_EXCL`` on local disk, a conditional put
(``If-None-Match: *``) on S3. A store whose backend cannot create exclusively
(``Capabilities.exclusive_create``) refuses leases: one run at a time there.

A task claims its songs with ``with store.leases.claim(song_id, run_id) as claim:``; a claim
is released when the block ends, or, with :meth:`Claim.release_after`, once the writes it
guards have ended. A process renews the leases it holds every ``beat`` seconds
(:data:`BEAT_ENV`, default 30 s); a lease not renewed for :data:`MISSED_BEATS` beats, or whose
process is gone (same host), is stale. Taking a stale lease over first creates, exclusively,
the marker ``_leases/__takeover/<song_id>/<dead run>-<dead time>``: of several runs that see
the same dead lease, one wins the marker and replaces the lease; the others leave the song.
Releasing a lease removes the folders it leaves empty.

On an object store a request whose answer was lost (a connection reset, a timeout) may have been
applied, and the client's retry of an exclusive create then finds the object there: a lease or takeover
marker found under this run's own id is this run's. A store that fails past the client's retries
(:mod:`.remote`) fails the claim; a release that fails so leaves the lease unrenewed, stale within
:data:`MISSED_BEATS` beats.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import StoreError, TransientStoreError
from .backend import Capabilities
from .layout import LEASES
from .remote import storage_options as with_settings, store_errors

TAKEOVERS = f"{LEASES}/__takeover"  # "__" never starts a song id
BEAT_ENV = "FSTORE_LEASE_BEAT_S"
DEFAULT_BEAT_S = 30.0
MISSED_BEATS = 3


def has_exclusive_create(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether the file system under ``url`` creates a file only where none is, atomically: local disk
    (a hard link fails on an existing name), S3 (``If-None-Match: *``) and fsspec's in-memory store (one
    process). Decided by the file system's class, not by its name."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.memory import MemoryFileSystem

    fs, _ = fsspec.core.url_to_fs(url, **with_settings(url, storage_options))
    if isinstance(fs, (LocalFileSystem, MemoryFileSystem)):
        return True
    try:
        from s3fs import S3FileSystem
    except ImportError:
        return False
    return isinstance(fs, S3FileSystem)


def group_lease(group: str) -> str:
    """The lease id under which ``--overwrite`` holds a whole group (no song id starts with "__")."""
    return f"__group/{group}"


def beat_seconds() -> float:
    """The heartbeat interval of this process (seconds), from :data:`BEAT_ENV`."""
    try:
        return float(os.environ.get(BEAT_ENV, DEFAULT_BEAT_S))
    except ValueError:
        return DEFAULT_BEAT_S


def is_stale(lease: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether a lease's run is gone: no beat for :data:`MISSED_BEATS` beats, or a dead pid on this host."""
    now = time.time() if now is None else now
    beat = float(lease.get("beat", DEFAULT_BEAT_S))
    if now - float(lease.get("time", 0)) > MISSED_BEATS * beat:
        return True
    if lease.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lease.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


class Claim:
    """A run's claim on one song: ``held`` when this run has the lease, else ``owner`` is the live
    owner's lease. Used as a context manager, it is released when the block ends, unless
    :meth:`release_after` handed the release to the writes it guards."""

    def __init__(self, leases: Leases, song_id: str, run_id: str, owner: dict[str, Any] | None) -> None:
        self.leases, self.song_id, self.run_id, self.owner = leases, song_id, run_id, owner
        self._handed_over = False

    @property
    def held(self) -> bool:
        return self.owner is None

    def release(self) -> None:
        """Give the lease up (no-op when this run does not hold it)."""
        if self.held:
            self.leases.release(self.song_id, self.run_id)

    def release_after(self, futures: Sequence[Future]) -> None:
        """Release once every one of ``futures`` is done (at once if there are none), whatever their outcome:
        no write outlives the lease that guards it."""
        self._handed_over = True
        remaining = [len(futures)]
        lock = threading.Lock()

        def one_done(_: Future) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self.release()

        if not futures:
            self.release()
        for future in futures:
            future.add_done_callback(one_done)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._handed_over:
            self.release()


class Leases:
    """The leases of one store (local path or fsspec URL) whose backend declared ``capabilities``."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 capabilities: Capabilities | None = None) -> None:
        """``capabilities``: the store's (default: writable, exclusive create as the file system declares)."""
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = url
        self.capabilities = capabilities or Capabilities(True, has_exclusive_create(url, storage_options))
        self.fs, self.root = fsspec.core.url_to_fs(url, **with_settings(url, storage_options))
        self.local = isinstance(self.fs, LocalFileSystem)
        self._group_made = False

    def _writable(self) -> None:
        if not self.capabilities.writable:
            raise StoreError(f"{self.url}: opened read-only, leases cannot change")
        if not self.capabilities.exclusive_create:
            raise StoreError(f"{self.url}: this storage has no exclusive create, so runs cannot share it safely; "
                             "run one extraction at a time on a local or S3 store")

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def _lease_key(self, song_id: str) -> str:
        return f"{LEASES}/{song_id}/zarr.json"

    # -- primitive operations --------------------------------------------------------------------
    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` (below the store's root) only if it does not exist, atomically; True if this call
        created it. Leases are claimed this way, and a new model group's configuration is fixed this way."""
        self._writable()
        path = self._path(key)
        with store_errors(f"{self.url}: cannot write {key}"):
            try:
                if self.local:
                    self._link_exclusive(path, data)
                else:
                    self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            except PermissionError as e:
                raise StoreError(f"{self.url}: cannot write {key}, the store is read-only ({e})") from e
            except OSError as e:
                if "PreconditionFailed" in str(e) or "412" in str(e):  # S3's answer to If-None-Match: *
                    return False
                raise
        return True

    @staticmethod
    def _link_exclusive(path: str, data: bytes) -> None:
        """Create ``path`` holding ``data`` only if it does not exist, never visible half-written: the
        content goes to a private file first, which is then hard-linked in place (``link`` fails with
        FileExistsError when the name is taken, like O_CREAT|O_EXCL). An interrupt at any point leaves
        either no lease or a whole one. A release may remove the empty folder meanwhile: retry."""
        for _ in range(10):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.new"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.link(tmp, path)
                return
            except FileNotFoundError:
                continue
            finally:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        raise OSError(f"{path}: its folder keeps disappearing")

    def _read(self, key: str) -> dict[str, Any] | None:
        with store_errors(f"{self.url}: cannot read a lease"):
            try:
                return json.loads(self.fs.cat_file(self._path(key)))["attributes"]
            except (FileNotFoundError, ValueError, KeyError):
                return None

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with store_errors(f"{self.url}: cannot renew a lease"):
            if self.local:  # readers see the old lease or the new one, never half of one
                tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            else:
                self.fs.pipe_file(path, data)

    def _delete(self, key: str) -> None:
        with store_errors(f"{self.url}: cannot release a lease"):
            try:
                self.fs.rm_file(self._path(key))
            except FileNotFoundError:
                pass
        self._prune(os.path.dirname(self._path(key)))

    def _prune(self, folder: str) -> None:
        """Remove ``folder`` and its parents below ``_leases`` while they are empty (local disk: object
        stores have no folders). A run creating a lease in one meanwhile retries (:meth:`_link_exclusive`)."""
        if not self.local:
            return
        top = self._path(LEASES)
        while folder.startswith(top + "/"):
            try:
                os.rmdir(folder)
            except OSError:  # not empty, or gone
                return
            folder = os.path.dirname(folder)

    # -- leases ----------------------------------------------------------------------------------
    @staticmethod
    def _doc(run_id: str, groups: Sequence[str] = ()) -> bytes:
        lease = {"run": run_id, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
                 "beat": beat_seconds(), "groups": list(groups)}
        return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": lease}).encode()

    def owner(self, song_id: str) -> dict[str, Any] | None:
        return self._read(self._lease_key(song_id))

    def claim(self, song_id: str, run_id: str, groups: Sequence[str] = ()) -> Claim:
        """Claim a song for ``run_id``: ``with leases.claim(song, run) as claim: if claim.held: ...``."""
        return Claim(self, song_id, run_id, self.acquire(song_id, run_id, groups))

    def acquire(self, song_id: str, run_id: str, groups: Sequence[str] = ()) -> dict[str, Any] | None:
        """Claim a song for ``run_id`` (which writes to ``groups``, recorded in the lease); None on success
        (the heartbeat keeps it), else the live owner's lease.

        Raises TransientStoreError when the store fails past the client's retries, after releasing the
        lease this call may have created."""
        self._writable()
        try:
            return self._acquire(song_id, run_id, groups)
        except TransientStoreError:
            self.release(song_id, run_id)
            raise

    def _acquire(self, song_id: str, run_id: str, groups: Sequence[str]) -> dict[str, Any] | None:
        if not self._group_made:  # `_leases` is a Zarr group, so Zarr tools listing the store do not trip on it
            self.create(f"{LEASES}/zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')
            self._group_made = True
        key = self._lease_key(song_id)
        for _ in range(2):
            if self.create(key, self._doc(run_id, groups)):
                _heartbeat.hold(self, song_id, run_id)
                return None
            owner = self._read(key)
            if owner is None:  # released between our create and read: claim again
                continue
            if owner.get("run") == run_id:  # this run's: its own create, applied though the answer was lost
                _heartbeat.hold(self, song_id, run_id)
                return None
            if not is_stale(owner):
                return owner
            marker = f"{TAKEOVERS}/{song_id}/{owner.get('run')}-{owner.get('time')}"
            if not self.create(marker, self._doc(run_id)) and (self._read(marker) or {}).get("run") != run_id:
                return owner  # another run is taking this dead lease over
            if self._read(key) == owner:
                self._delete(key)
        return self._read(key) or {"run": "unknown"}

    def release(self, song_id: str, run_id: str) -> None:
        """Give up ``run_id``'s claim on a song (no-op if that run does not hold it).

        The heartbeat lets it go first; if the store then fails past the client's retries, the lease
        is left to go stale (any run takes it over after :data:`MISSED_BEATS` beats) rather than fail
        the writes it guarded."""
        _heartbeat.drop(self, song_id, run_id)
        try:
            owner = self.owner(song_id)
            if owner is not None and owner.get("run") == run_id:
                self._delete(self._lease_key(song_id))
            self._clear_takeovers(song_id)
        except TransientStoreError:
            pass

    def _clear_takeovers(self, song_id: str) -> None:
        path = self._path(f"{TAKEOVERS}/{song_id}")
        with store_errors(f"{self.url}: cannot release a lease"):
            try:
                for p in self.fs.ls(path, detail=False):
                    self.fs.rm_file(p)
            except FileNotFoundError:
                return
        self._prune(path)

    def renew(self, song_id: str, run_id: str) -> bool:
        """Refresh ``run_id``'s lease time; False if the lease is no longer that run's."""
        key = self._lease_key(song_id)
        owner = self._read(key)
        if owner is None or owner.get("run") != run_id:
            return False
        self._write(key, self._doc(run_id, owner.get("groups") or ()))
        return True

    def held(self) -> list[dict[str, Any]]:
        """Every lease in the store: its song_id, run, host, pid, time, beat, and whether it is stale."""
        base = self._path(LEASES)
        with store_errors(f"{self.url}: cannot list the leases"):
            try:
                paths = self.fs.find(base)
            except FileNotFoundError:
                return []
        out = []
        for p in paths:
            rel = p[len(base.lstrip("/")) if not p.startswith("/") else len(base):].strip("/")
            if not rel.endswith("/zarr.json") or rel.startswith("__takeover/"):
                continue
            song_id = rel[: -len("/zarr.json")]
            lease = self.owner(song_id)
            if lease is not None:
                out.append({"song_id": song_id, **lease, "stale": is_stale(lease)})
        return sorted(out, key=lambda d: d["song_id"])

    def working_on(self, group: str, besides: str) -> list[dict[str, Any]]:
        """The live leases of runs other than ``besides`` that write to ``group`` (or do not say which groups)."""
        return [lease for lease in self.held() if not lease["stale"] and lease["run"] != besides
                and not lease["song_id"].startswith("__") and group in (lease.get("groups") or [group])]

    def clear_stale(self, song_ids: set[str], run_id: str) -> int:
        """Free the stale leases of ``song_ids`` (left by runs that died after writing a song, before letting
        it go) through the takeover protocol, so a live run's lease is never touched; how many went."""
        cleared = 0
        for lease in self.held():
            if lease["stale"] and lease["song_id"] in song_ids and self.acquire(lease["song_id"], run_id) is None:
                self.release(lease["song_id"], run_id)
                cleared += 1
        return cleared

    def force_release(self, song_id: str) -> None:
        """Remove a song's lease whoever holds it (``fstore leases --release``)."""
        self._writable()
        self._delete(self._lease_key(song_id))
        self._clear_takeovers(song_id)


@dataclass
class _Heartbeat:
    """One thread per process renewing the leases this process holds, each once per beat."""

    held: dict[tuple[int, str, str], tuple[Leases, float]] = field(default_factory=dict)  # -> (leases, last beat)
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def hold(self, leases: Leases, song_id: str, run_id: str) -> None:
        with self.lock:
            self.held[(id(leases), song_id, run_id)] = (leases, time.time())
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="fstore-lease-heartbeat", daemon=True)
                self.thread.start()
        self.wake.set()  # the interval may have changed since the thread went to sleep

    def drop(self, leases: Leases, song_id: str, run_id: str) -> None:
        with self.lock:
            self.held.pop((id(leases), song_id, run_id), None)

    def _beat(self) -> None:
        while True:
            self.wake.wait(beat_seconds())
            self.wake.clear()
            beat, now = beat_seconds(), time.time()
            with self.lock:
                due = [(k, v[0]) for k, v in self.held.items() if now - v[1] >= 0.9 * beat]
            for key, leases in due:
                # renewing under the lock: a release (which drops the key first, under the same lock)
                # can never be followed by a renewal that would write the lease back
                with self.lock:
                    if key not in self.held:
                        continue
                    try:
                        leases.renew(key[1], key[2])
                    except (OSError, StoreError):  # a missed beat; the next one may get through
                        continue
                    self.held[key] = (leases, now)


_heartbeat = _Heartbeat()
