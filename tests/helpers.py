"""Helpers the test modules share (no test module imports another)."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytest


def bf16_cpu_missing() -> str | None:
    """Why this CPU cannot run fstore's bf16 paths (None when it can): fstore refuses ``--precision bf16``
    on a CPU with neither AVX512-BF16 nor AMX; there oneDNN's bf16 convolutions raise (they need AVX-512
    BW/VL/DQ or AVX-NE-CONVERT) and a large bf16 GEMM takes minutes in a fallback."""
    from featurestore.devices import cpu_flags

    flags = cpu_flags()
    if flags is None:  # not Linux: nothing to tell, let the test run
        return None
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has neither avx512_bf16 nor amx_bf16 (fstore refuses --precision bf16 on it)"
    return None


requires_bf16_cpu = pytest.mark.skipif(bf16_cpu_missing() is not None, reason=str(bf16_cpu_missing()))


def loaded_models(*names: str, **options: object) -> list:
    """The registered extractors ``names`` with ``options``, loaded on the CPU."""
    from featurestore.extractors import registry

    exts = [registry.create(n, **options) for n in names]
    for e in exts:
        e.load("cpu")
    return exts


class Events:
    """A reporter that keeps the summary a run ends with (``ended``) and ignores the rest."""

    def __init__(self) -> None:
        self.ended = None

    def start(self, n_songs, models) -> None:
        pass

    def song_done(self, file) -> None:
        pass

    def result(self, result) -> None:
        pass

    def end(self, summary) -> None:
        self.ended = summary


def fstore(*args: object, **kwargs: object):
    """``fstore ARGS...`` run in this process through Typer's test runner (exceptions propagate);
    ``kwargs`` go to :meth:`CliRunner.invoke` (``input=...``, ``env=...``)."""
    from typer.testing import CliRunner

    from featurestore.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def output(result) -> str:
    """A CLI result's output with rich's line wrapping undone (messages are matched as one line)."""
    return " ".join(result.output.split())


def write_group(store, group: str, songs: dict[str, np.ndarray], dims: tuple[str, ...], axis,
                coords: dict | None = None, config: dict | None = None) -> None:
    """Write ``songs`` (song id -> array with ``dims``) as group ``group`` of ``store`` (a FeatureStore) on the
    clock ``axis`` (a TimeAxis), with the attributes a run records: the group's first (``config`` there only,
    as a model's description has it: e.g. ``{"layers": [12]}`` for MERT stored with one layer), then each
    array's, ``complete`` last."""
    attrs = {"model": group, "fingerprint": group, "dims": list(dims), "dtype": "float32", "group": group,
             **axis.as_attrs(), **({"coords": coords} if coords else {})}
    store.ensure_model(group, {**attrs, **({"config": config} if config else {})})
    for song, data in songs.items():
        frames = data.shape[dims.index("time")]
        store.write(group, song, data, {**attrs, "duration_s": frames * axis.hop_s,
                                        "n_samples": frames * axis.hop_samples, "source": {}})


# -- weights in the official formats (the real OpenL3 and MERT weights cannot be downloaded here) -----------
_CONVS = ((1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512))


def write_official_layout(path: Path, seed: int = 0, drop: str | None = None, bad_shape: str | None = None) -> Path:
    """A random-valued weights file in the official Keras HDF5 layout (names as in the parity file)."""
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = [("input_1", []), ("melspectrogram", [])]

    def bn(name: str, c: int, mean: float, var: float) -> None:
        layers.append((name, [("gamma", rng.uniform(0.5, 1.5, c)), ("beta", rng.normal(0, 0.2, c)),
                              ("moving_mean", rng.normal(mean, 0.5, c)), ("moving_variance", rng.uniform(var, 2 * var, c))]))

    bn("batch_normalization", 1, -40.0, 200.0)
    for i, (cin, cout) in enumerate(_CONVS):
        name = "audio_embedding_layer" if i == 7 else f"conv2d_{i}" if i else "conv2d"
        layers.append((name, [("kernel", rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout))),
                              ("bias", rng.normal(0, 0.05, cout))]))
        if i < 7:
            bn(f"batch_normalization_{i + 1}", cout, 0.0, 0.5)
            layers.append((f"activation_{i}" if i else "activation", []))
    if bad_shape is not None:  # one more output channel in the layer's kernel than its bias has
        layers = [(name, [(v, np.resize(a, a.shape[:-1] + (a.shape[-1] + 1,)) if name == bad_shape and v != "bias"
                           else a) for v, a in variables]) for name, variables in layers]
    return _write_keras_layers(path, layers, b"2.21.0", "{layer}", missing=drop)


def write_crepe_layout(path: Path, capacity: str = "full", seed: int = 0) -> Path:
    """Random-valued CREPE weights of ``capacity`` in crepe's Keras HDF5 layout (the packaged files' names:
    conv1..conv6 with kernel (width, in, out) and bias, conv1-BN..conv6-BN, classifier), for machines
    without the weights package of that capacity; timing does not depend on the values."""
    from featurestore.extractors._crepe_net import _FILTER_FACTORS, _WIDTHS, CAPACITIES, N_BINS

    rng = np.random.default_rng(seed)
    filters = [factor * CAPACITIES[capacity] for factor in _FILTER_FACTORS]
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = [("input", []), ("input-reshape", [])]
    for i, (width, cin, cout) in enumerate(zip(_WIDTHS, [1, *filters], filters), start=1):
        layers.append((f"conv{i}", [("kernel", rng.normal(0, np.sqrt(2 / (width * cin)), (width, cin, cout))),
                                    ("bias", rng.normal(0, 0.05, cout))]))
        layers.append((f"conv{i}-BN", [("gamma", rng.uniform(0.5, 1.5, cout)), ("beta", rng.normal(0, 0.2, cout)),
                                       ("moving_mean", rng.normal(0, 0.5, cout)),
                                       ("moving_variance", rng.uniform(0.5, 1.0, cout))]))
        layers += [(f"conv{i}-maxpool", []), (f"conv{i}-dropout", [])]
    flat = 4 * filters[-1]  # 4 time steps are left after six (2, 1) pools of 256
    layers += [("transpose", []), ("flatten", []),
               ("classifier", [("kernel", rng.normal(0, np.sqrt(1 / flat), (flat, N_BINS))),
                               ("bias", rng.normal(0, 0.05, N_BINS))])]
    return _write_keras_layers(path, layers, b"2.1.5", "{layer}_1")


def _write_keras_layers(path: Path, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], keras_version: bytes,
                        scope: str, missing: str | None = None) -> Path:
    """A Keras HDF5 weights file: ``layer_names``, then a group per layer whose ``weight_names`` list its
    variables as ``<scope>/<variable>:0`` (``scope`` formatted with ``layer``), float32. The variables of
    layer ``missing`` are listed but not written."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras_version
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        for name, variables in layers:
            g = f.create_group(name)
            names = [f"{scope.format(layer=name)}/{v}:0" for v, _ in variables]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            if name != missing:
                for n, (_, a) in zip(names, variables):
                    g.create_dataset(n, data=a.astype(np.float32))
    return path


#: config.json of the published snapshot, with tiny sizes (same keys and model_type)
TINY_CONFIG = {
    "activation_dropout": 0.1, "apply_spec_augment": True, "architectures": ["MERTModel"],
    "attention_dropout": 0.1, "attention_relax": -1.0,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "bos_token_id": 1, "classifier_proj_size": 256, "conv_bias": False, "conv_dim": [16] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum", "ctc_zero_infinity": False, "deepnorm": False, "do_stable_layer_norm": False,
    "eos_token_id": 2, "feat_extract_activation": "gelu", "feat_extract_norm": "group", "feat_proj_dropout": 0.0,
    "feat_proj_layer_norm": True, "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1, "hidden_act": "gelu", "hidden_dropout": 0.1, "hidden_size": 32,
    "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05, "layerdrop": 0.1,
    "mask_feature_length": 10, "mask_feature_min_masks": 0, "mask_feature_prob": 0.0, "mask_time_length": 10,
    "mask_time_min_masks": 2, "mask_time_prob": 0.05, "model_type": "mert_model", "num_attention_heads": 4,
    "num_conv_pos_embedding_groups": 4, "num_conv_pos_embeddings": 16, "num_feat_extract_layers": 7,
    "num_hidden_layers": 2, "pad_token_id": 0, "sample_rate": 24000, "transformers_version": "4.38.2",
    "use_weighted_layer_sum": False, "vocab_size": 32,
}
#: config.json with MERT-v1-95M's sizes (512-channel conv front end, 12 layers of 768, positional conv 128/16)
FULL_SIZE_CONFIG = {
    **TINY_CONFIG, "conv_dim": [512] * 7, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128, "num_hidden_layers": 12,
}
PREPROCESSOR = {
    "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
    "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": 24000,
}
_NEW_G = "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
_NEW_V = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"


def reference_model(config: dict = TINY_CONFIG):
    """A randomly initialised HubertModel built directly from the mapped config, every parameter perturbed."""
    import torch
    from transformers import HubertModel

    from featurestore.extractors._mert_hf import hubert_config

    torch.manual_seed(0)
    model = HubertModel(hubert_config(config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def write_snapshot(folder: Path, config: dict = TINY_CONFIG, fmt: str = "bin", do_normalize: bool = True) -> Path:
    """A MERT-format snapshot: config.json, preprocessor_config.json, weights under the published
    file names (``pytorch_model.bin`` with torch<2.1 weight-norm names and ``masked_spec_embed``,
    or ``model.safetensors`` with today's names), and remote-code stand-ins that abort if run."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR, "do_normalize": do_normalize}))
    for name in ("configuration_MERT.py", "modeling_MERT.py"):
        (folder / name).write_text("raise SystemExit('remote code must never run')\n")
    state = {k: v.detach().clone().contiguous() for k, v in reference_model(config).state_dict().items()}
    if fmt == "bin":
        state["encoder.pos_conv_embed.conv.weight_g"] = state.pop(_NEW_G)
        state["encoder.pos_conv_embed.conv.weight_v"] = state.pop(_NEW_V)
        state["masked_spec_embed"] = torch.rand(config["hidden_size"])
        torch.save(state, folder / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    return folder


# -- S3: a moto server, and a proxy in front of it that injects faults ------------------------------------------
S3_BUCKET = "fstore-test"


@contextmanager
def moto_s3(bucket: str = S3_BUCKET) -> Iterator[dict]:
    """storage_options for a fresh ``bucket`` on a moto S3 server at 127.0.0.1 (random port), with test
    credentials in the environment while it runs (worker processes and ``fstore`` subprocesses inherit them)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield {"client_kwargs": {"endpoint_url": endpoint}}
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class FaultRates:
    """The fraction of requests a :class:`FaultProxy` answers with each fault; the others pass untouched."""

    internal_error: float = 0.0  # HTTP 500 InternalError; the request never reaches the server
    slow_down: float = 0.0  # HTTP 503 SlowDown (S3's throttling answer); never reaches the server
    reset: float = 0.0  # forwarded (the server applies it), then the connection is reset: the answer is lost
    delay: float = 0.0  # forwarded, then the answer is held past the client's read timeout and dropped


#: what a FaultProxy counts: requests passed on untouched, each fault, and answers of the ``broken`` requests;
#: FORBIDDEN (403 AccessDenied, a refusal no retry changes) is only given by a ``script``
PASSED, INTERNAL_ERROR, SLOW_DOWN, RESET, DELAY, BROKEN = "passed", "internal_error", "slow_down", "reset", "delay", "broken"
FORBIDDEN = "forbidden"
_S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
             '<RequestId>fault-proxy</RequestId></Error>')
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


class FaultProxy:
    """A reverse proxy on 127.0.0.1 (random port) in front of an S3 endpoint that injects faults.

    Each request's fault is drawn from its own RNG seeded by (``seed``, method, path and query, how many
    times that same request came before), so a test sees the same faults whatever order its threads send
    requests in, and a retry draws afresh. Requests matching ``broken`` (method, path regex) get a 500
    every time: a write that still fails after every retry. ``script`` maps (method, path regex) to the
    faults of the first requests matching it, in order (PASSED lets one through). ``faulty = False``
    forwards everything untouched from then on; ``counts`` says what the proxy did. Headers go through as sent (a conditional
    put keeps its ``If-None-Match``), but for the hop-by-hop ones; use as a context manager.
    """

    def __init__(self, upstream: str, rates: FaultRates = FaultRates(), seed: int = 0, delay_s: float = 2.0,
                 broken: tuple[str, str] | None = None,
                 script: Mapping[tuple[str, str], Sequence[str]] | None = None) -> None:
        import threading
        from collections import Counter
        from urllib.parse import urlsplit

        self.upstream = urlsplit(upstream)
        self.rates, self.seed, self.delay_s = rates, seed, delay_s
        self.broken = (broken[0], re.compile(broken[1])) if broken else None
        self.script = [(method, re.compile(path), list(kinds)) for (method, path), kinds in (script or {}).items()]
        self.faulty = True
        self.counts: Counter[str] = Counter()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._closing = threading.Event()  # ends the held answers of delayed requests at once
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def hold_answer(self) -> None:
        """Wait past the client's read timeout (``delay_s``), or until the proxy closes."""
        self._closing.wait(self.delay_s)

    def storage_options(self, **config: Any) -> dict:
        """storage_options reaching the server through this proxy; ``config`` goes to botocore's Config."""
        return {"client_kwargs": {"endpoint_url": self.endpoint}, **({"config_kwargs": config} if config else {})}

    def choose(self, method: str, target: str) -> str:
        """What to do with this request: PASSED or a fault (counted)."""
        import random

        with self._lock:
            self._seen[method, target] += 1
            n = self._seen[method, target]
        kind, path = PASSED, target.split("?")[0]
        scripted = [kinds for m, pattern, kinds in self.script if m == method and pattern.search(path) and kinds]
        if self.faulty:
            if self.broken and method == self.broken[0] and self.broken[1].search(path):
                kind = BROKEN
            elif scripted:
                with self._lock:
                    kind = scripted[0].pop(0)
            else:
                x = random.Random(f"{self.seed} {method} {target} {n}").random()
                for name, rate in (
                    (INTERNAL_ERROR, self.rates.internal_error), (SLOW_DOWN, self.rates.slow_down),
                    (RESET, self.rates.reset), (DELAY, self.rates.delay),
                ):
                    if x < rate:
                        kind = name
                        break
                    x -= rate
        with self._lock:
            self.counts[kind] += 1
        return kind


class _ProxyServer(ThreadingHTTPServer):
    """The HTTP server of a :class:`FaultProxy`: a thread per client connection."""

    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (its read timeout) and closed the connection while its answer was sent is
        what the faults are for; anything else is a bug of the proxy, printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    """One client connection of a :class:`FaultProxy` (HTTP/1.1, kept alive as the client asks)."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _relay(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._body()
        kind = proxy.choose(self.command, self.path)
        if kind in (INTERNAL_ERROR, BROKEN):
            return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
        if kind == SLOW_DOWN:
            return self._error(503, "SlowDown", "Please reduce your request rate.")
        if kind == FORBIDDEN:
            return self._error(403, "AccessDenied", "Access Denied")
        status, reason, headers, answer = self._forward(body)
        if kind == RESET:  # the server has applied the request; its answer is lost
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        if kind == DELAY:  # past the client's read timeout: it has given up and retried (or will)
            proxy.hold_answer()
            self.close_connection = True
            return None
        self.send_response_only(status, reason)
        length = str(len(answer))
        for name, value in headers:
            if name.lower() == "content-length":
                length = value  # a HEAD's: the length of what a GET would return
            elif name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)
        return None

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The request sent on to the server as it came (a new connection each time: a request is sent once)."""
        import http.client

        up = self.server.proxy.upstream
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            upstream.close()

    def _error(self, status: int, code: str, message: str) -> None:
        xml = _S3_ERROR.format(code=code, message=message).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        self.wfile.write(xml)
