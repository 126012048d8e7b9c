"""A MERT snapshot (config.json + weights) as transformers' own ``HubertModel``, no remote code.

MERT-v1-95M is HuBERT with a layer norm before the feature projection; its extra options
(deepnorm residual scaling, relaxed attention, a CQT branch beside the conv front end) are off.
This module maps the snapshot's ``config.json`` (model_type ``mert_model``) onto a
``HubertConfig``, refuses configs whose extra options are on (their maths differs from
HuBERT's), and loads ``pytorch_model.bin`` or ``model.safetensors`` with the weight-norm key
names of old and new torch. Nothing from the snapshot is executed.

Only :func:`read_snapshot_config` and :func:`check_config` are import-light; the rest imports
torch/transformers inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import FstoreError

#: sample rate, conv stride and receptive field that fstore's MERT time axis assumes
SAMPLE_RATE = 24000
HOP = 320
RECEPTIVE_FIELD = 400

#: architecture keys taken from config.json, with MERTConfig's defaults for absent ones
_ARCH_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "feat_proj_layer_norm": True,
}

_POS_CONV = "encoder.pos_conv_embed.conv."
#: weight-norm parameter names: torch < 2.1 (``nn.utils.weight_norm``) -> parametrizations
_WEIGHT_NORM_RENAMES = {
    _POS_CONV + "weight_g": _POS_CONV + "parametrizations.weight.original0",
    _POS_CONV + "weight_v": _POS_CONV + "parametrizations.weight.original1",
}
#: training-only parameters a MERT checkpoint carries that inference never reads
_TRAINING_ONLY = ("masked_spec_embed",)


class UnsupportedMertConfig(FstoreError, ValueError):
    """A snapshot whose config asks for maths that plain HuBERT does not compute."""


def read_snapshot_config(folder: Path) -> dict[str, Any]:
    """The snapshot's ``config.json`` as a dict (plain JSON read: no torch, no remote code)."""
    with open(folder / "config.json", encoding="utf-8") as f:
        return json.load(f)


def read_do_normalize(folder: Path) -> bool:
    """``do_normalize`` of the snapshot's ``preprocessor_config.json`` (Wav2Vec2FeatureExtractor's default: True)."""
    with open(folder / "preprocessor_config.json", encoding="utf-8") as f:
        return bool(json.load(f).get("do_normalize", True))


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a MERT ``config.json`` and return the HuBERT architecture keys it sets.

    Raises
    ------
    UnsupportedMertConfig
        For another model type, MERT-only options that change the maths (CQT branch,
        deepnorm, relaxed attention: MERT-v1-330M and others), or a sample rate / conv
        layout other than 24 kHz, stride 320, receptive field 400 (fstore's time axis).
    """
    if config.get("model_type") != "mert_model":
        raise UnsupportedMertConfig(f"config.json has model_type {config.get('model_type')!r}, expected 'mert_model'")
    changes_maths = []
    if config.get("feature_extractor_cqt", False):
        changes_maths.append("feature_extractor_cqt=true (a CQT branch beside the conv front end)")
    if config.get("deepnorm", False):
        changes_maths.append("deepnorm=true (scaled residual connections)")
    if float(config.get("attention_relax", -1.0)) > 0:
        changes_maths.append(f"attention_relax={config['attention_relax']} (relaxed attention)")
    if changes_maths:
        raise UnsupportedMertConfig(
            "this MERT snapshot uses " + "; ".join(changes_maths) + ", which transformers' HubertModel does not "
            "compute (MERT-v1-330M and others); fstore supports MERT-v1-95M-style configs only"
        )
    arch = {k: config.get(k, default) for k, default in _ARCH_DEFAULTS.items()}
    rate = int(config.get("sample_rate", SAMPLE_RATE))
    stride, field = 1, 1
    for k, s in zip(arch["conv_kernel"], arch["conv_stride"]):
        field += (k - 1) * stride
        stride *= s
    if (rate, stride, field) != (SAMPLE_RATE, HOP, RECEPTIVE_FIELD):
        raise UnsupportedMertConfig(
            f"this MERT snapshot runs at {rate} Hz with conv stride {stride} and receptive field {field}; "
            f"fstore's MERT time axis needs {SAMPLE_RATE} Hz, {HOP}, {RECEPTIVE_FIELD}"
        )
    return arch


def hubert_config(config: dict[str, Any]) -> Any:
    """The ``transformers.HubertConfig`` computing what MERT computes for this snapshot config (inference only)."""
    from transformers import HubertConfig

    return HubertConfig(
        **check_config(config),
        conv_pos_batch_norm=False,  # MERT's positional conv uses weight norm, never batch norm
        apply_spec_augment=False,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        layerdrop=0.0,
        attn_implementation="sdpa",
    )


def load_state_dict(weights: Path) -> dict[str, Any]:
    """The checkpoint's tensors (float32) under the parameter names of today's ``HubertModel``."""
    import torch

    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    out = {}
    for name, tensor in state.items():
        if name in _TRAINING_ONLY:
            continue
        out[_WEIGHT_NORM_RENAMES.get(name, name)] = tensor.float() if tensor.is_floating_point() else tensor
    return out


def build_model(config: dict[str, Any], weights: Path, device: str) -> Any:
    """A float32 ``HubertModel`` in eval mode on ``device`` holding the snapshot's weights.

    The modules are created on the meta device and the checkpoint's tensors assigned to them,
    so no random initialisation is computed; loading is strict (a missing or unexpected
    parameter is an error naming it). The positional conv's weight norm is folded into its
    weight (inference never changes it, so it need not be recomputed on every call).
    """
    import torch
    from torch.nn.utils import parametrize
    from transformers import HubertModel

    with torch.device("meta"):
        model = HubertModel(hubert_config(config))
    result = model.load_state_dict(load_state_dict(weights), strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise UnsupportedMertConfig(
            f"{weights} does not match the architecture in config.json: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    parametrize.remove_parametrizations(model.encoder.pos_conv_embed.conv, "weight")
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"HubertModel chose attention {model.config._attn_implementation!r}, expected 'sdpa'")
    return model.to(device).eval()
