"""How fstore talks to object stores: the retry and timeout settings it opens ``s3://`` stores with, and
which failures of a store may pass (a song fails, the run goes on) and which will not (the run stops).

**Settings.** Every fsspec file system fstore opens (the Zarr store, its leases, the checks before a run,
in this process and in every worker) gets its options from :func:`storage_options`. For S3 that adds
:data:`S3_CONFIG` to botocore's ``Config``, under what the user set: fsspec's configuration for the
protocol (``FSSPEC_S3_CONFIG_KWARGS='{"read_timeout": 60}'``, ``FSSPEC_S3='{...}'`` or a file in
``~/.config/fsspec/``), then the ``storage_options`` given in Python; a key the user sets wins, also
inside ``retries``. Given explicitly, they take precedence over botocore's own sources
(``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``, ``~/.aws/config``), as any client ``Config`` does.

Who retries what, per request:

- botocore (``standard`` mode, :data:`S3_CONFIG`): HTTP 500/502/503/504, throttling (``SlowDown``),
  ``RequestTimeout``, a connection refused, reset or closed, and connect and read timeouts, with
  exponential backoff and full jitter (``rand(0, 1) * 2**retry`` s, at most 20 s), 4 retries (5 attempts in
  all), within a retry quota per client that stops retrying in a long outage. Why: ``standard`` is the
  mode AWS recommends, and its quota keeps a run's many requests from piling retries onto a failing
  endpoint; ``legacy``, botocore's default, retries much the same with no quota; ``adaptive`` adds a
  client-side rate limiter, which one client among many processes does not need. 4 retries (the count
  s3fs users had under ``legacy``) rather than ``standard``'s 2 ride out several seconds of 5xx.
- s3fs wraps each call in a loop of its own (5 tries, 0.1 s to 0.8 s apart) around botocore's, for a
  connection closed or reset, a timeout, an incomplete or unparsable answer, ``SlowDown``, and a
  response body cut off while it is read, which botocore cannot retry. Its count is a class attribute,
  not an option; fstore leaves it as it is and adds no loop of its own. A request that keeps timing out
  is so tried up to 5 × 5 times (6 to 8 min at the 15-s read timeout) before it fails; one answered
  with 500 every time fails after botocore's 5 attempts (7.5 s of backoff on average).
- The timeouts: 5 s to connect (a reachable endpoint answers in milliseconds) and 15 s of silence while
  a response is awaited or read (fstore's objects are at most a 4-MiB chunk), as s3fs's own defaults.

**What a failure means** (:func:`is_transient`). An error that may pass once tried again later, seen
after those retries, fails only the song concerned (its failure is recorded if the store takes the
record; the summary lists it and the same command redoes it): the network failed (a connection reset,
refused or closed, a timeout) or the server did (HTTP 5xx, throttling, S3's ``RequestTimeout``). Every
other storage error stops the run, since every later write would fail too: permission denied, no space,
a read-only file system, a missing bucket, and anything not recognised.
"""

from __future__ import annotations

import errno
import functools
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from ..errors import StoreError, TransientStoreError

#: botocore ``Config`` settings fstore opens ``s3://`` stores with, under the user's own (module docstring)
S3_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 4}, "connect_timeout": 5,
                             "read_timeout": 15}
S3_PROTOCOLS = ("s3", "s3a")

#: errno values of failures that do not pass by waiting
PERSISTENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
#: HTTP answers that may pass when tried again: 5xx, and these
TRANSIENT_STATUS = frozenset({408, 429})
TRANSIENT_CODES = frozenset({"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "TooManyRequests"})


def storage_options(url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fsspec options fstore opens ``url`` with: ``options`` as given, and for S3 :data:`S3_CONFIG`
    under the user's ``config_kwargs`` (fsspec's configuration of the protocol, then ``options``)."""
    options = dict(options or {})
    protocol = url.split("://", 1)[0] if "://" in url else ""
    if protocol not in S3_PROTOCOLS:
        return options
    from fsspec.config import conf

    configured: dict[str, Any] = {}
    for name in S3_PROTOCOLS:  # fsspec applies both names' configuration to s3fs
        configured.update(conf.get(name, {}).get("config_kwargs") or {})
    given = options.get("config_kwargs") or {}
    config = {**S3_CONFIG, **configured, **given}
    config["retries"] = {**S3_CONFIG["retries"], **(configured.get("retries") or {}), **(given.get("retries") or {})}
    return {**options, "config_kwargs": config}


@functools.cache
def io_errors() -> tuple[type[BaseException], ...]:
    """What storage raises when it fails (rather than fstore): OSError, and the errors of botocore and aiohttp
    that s3fs passes on untranslated (a connection closed, a timeout). Imported only when something failed."""
    found: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        found += [BotoCoreError, ClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientError as AiohttpError

        found.append(AiohttpError)
    except ImportError:
        pass
    return tuple(found)


def is_transient(error: BaseException) -> bool:
    """Whether a storage error may pass when tried again later (the rule of the module docstring).

    The error and its causes are looked at outermost first; the first that tells decides. s3fs turns
    botocore's HTTP errors into OSErrors (403 into PermissionError, 5xx into EREMOTEIO or EBUSY) with the
    original as the cause, so a refusal is known by its OSError and a server failure by its cause."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (PermissionError, FileNotFoundError, FileExistsError)) or \
                (isinstance(current, OSError) and current.errno in PERSISTENT_ERRNOS):
            return False
        if isinstance(current, (TimeoutError, ConnectionError)):  # builtins; asyncio's TimeoutError is TimeoutError
            return True
        answer = _http_answer(current)
        if answer is not None:
            status, code = answer
            return status >= 500 or status in TRANSIENT_STATUS or code in TRANSIENT_CODES
        if _is_network_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _http_answer(error: BaseException) -> tuple[int, str] | None:
    """(HTTP status, error code) of a botocore ClientError, else None."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping) or "ResponseMetadata" not in response:
        return None
    status = response["ResponseMetadata"].get("HTTPStatusCode") or 0
    return int(status), str((response.get("Error") or {}).get("Code", ""))


def _is_network_error(error: BaseException) -> bool:
    """A connection or timeout error of botocore, aiohttp or fsspec."""
    kinds: list[type[BaseException]] = []
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError, HTTPClientError

        kinds += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError, ClientPayloadError

        kinds += [ClientConnectionError, ClientPayloadError]
    except ImportError:
        pass
    from fsspec.exceptions import FSTimeoutError

    return isinstance(error, (FSTimeoutError, *kinds))


@contextmanager
def store_errors(message: str) -> Iterator[None]:
    """Raise a storage failure inside the block as :class:`StoreError` saying ``message`` and the cause, or
    as :class:`TransientStoreError` when it may pass (:func:`is_transient`). Other errors pass unchanged."""
    try:
        yield
    except StoreError:
        raise
    except io_errors() as e:
        if is_transient(e):
            raise TransientStoreError(f"{message}: {e} (a network or server error that may pass; "
                                      "run the same command again)") from e
        raise StoreError(f"{message}: {e}") from e
