"""Seconds per 30-s clip for fstore's MERT extractor, fp32 vs bf16 autocast, on the CPU.

    python bench/bench_mert.py [--threads N]

No download: a randomly initialised full-size MERT-v1-95M (the published config.json's
architecture, mapped to transformers' HubertModel) is saved as a snapshot in a temporary
folder and run through the extractor; timing does not depend on the weights' values. The
reference is HubertModel called the usual way on the same clip (whole clip, one pass, after
``Wav2Vec2FeatureExtractor``). The machine's GEMM rates are measured in the same run, and each
time is also given as a fraction of the GEMM floor (the model's multiply-adds at that rate).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds, gemm_gflops  # noqa: E402

from featurestore.extractors._mert_hf import hubert_config, load_state_dict  # noqa: E402
from featurestore.extractors.mert import Mert, n_frames  # noqa: E402
from featurestore.testing import test_signal  # noqa: E402

#: the architecture keys of m-a-p/MERT-v1-95M's config.json
MERT_95M = {
    "model_type": "mert_model", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-5, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "conv_dim": [512] * 7, "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_bias": False, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "do_stable_layer_norm": False, "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False, "deepnorm": False, "attention_relax": -1.0, "sample_rate": 24000,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
}


def write_random_snapshot(folder: Path, config: dict = MERT_95M) -> Path:
    """A MERT-format snapshot folder with random weights (model.safetensors) for ``config``."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import HubertModel

    torch.manual_seed(0)
    model = HubertModel(hubert_config(config))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 24000}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def flops_per_clip(config: dict, n_samples: int) -> float:
    """Multiply-adds x 2 of one pass: conv front end, projection, positional conv, transformer (with attention)."""
    length, macs, c_in = n_samples, 0, 1
    for c_out, k, s in zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"]):
        length = (length - k) // s + 1
        macs += length * c_out * c_in * k
        c_in = c_out
    d, f, t = config["hidden_size"], config["intermediate_size"], length
    macs += t * c_in * d  # projection
    macs += t * d * (d // config["num_conv_pos_embedding_groups"]) * config["num_conv_pos_embeddings"]
    macs += config["num_hidden_layers"] * (t * (4 * d * d + 2 * d * f) + 2 * t * t * d)
    return 2.0 * macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import numpy as np
    import torch
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    if args.threads:
        torch.set_num_threads(args.threads)
    wave = test_signal(30 * 24000, 24000)
    flops = flops_per_clip(MERT_95M, len(wave))
    rates = {p: gemm_gflops(p) for p in ("fp32", "bf16")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 30-s clip = {n_frames(len(wave))} frames, "
          f"{flops / 1e12:.2f} TFLOP; GEMM 4096^2: fp32 {rates['fp32']:.0f}, bf16 {rates['bf16']:.0f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_random_snapshot(Path(tmp))
        processor = Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=24000)
        reference = HubertModel(hubert_config(MERT_95M)).eval()
        reference.load_state_dict(load_state_dict(folder / "model.safetensors"))

        def usual_way() -> None:
            values = processor(wave, sampling_rate=24000, return_tensors="pt").input_values
            with torch.inference_mode():
                reference(values)

        ref_s = best_seconds(usual_way, repeats=2)
        print(f"{'':34}{'s/clip':>8}{'x ref':>8}{'floor s':>9}{'of floor':>9}")
        print(f"{'HubertModel + processor, fp32':34}{ref_s:8.2f}{1.0:8.2f}{flops / rates['fp32'] / 1e9:9.2f}"
              f"{flops / rates['fp32'] / 1e9 / ref_s:9.0%}")
        outputs = {}
        for precision in ("fp32", "bf16"):
            ext = Mert(model_path=str(folder), precision=precision)
            ext.load("cpu")
            seconds = best_seconds(lambda: ext.extract(wave), repeats=2)
            outputs[precision] = ext.extract(wave)
            floor = flops / rates[precision] / 1e9
            print(f"{'fstore mert, ' + precision:34}{seconds:8.2f}{ref_s / seconds:8.2f}{floor:9.2f}{floor / seconds:9.0%}")
        scale = np.abs(outputs["fp32"]).max()
        print(f"bf16 vs fp32: max |diff| {np.abs(outputs['bf16'] - outputs['fp32']).max():.3g} (max |fp32| {scale:.3g})")


if __name__ == "__main__":
    main()
