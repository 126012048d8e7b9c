"""Seconds per clip end to end: the classic sequential script vs ``fstore extract`` (default precision, bf16).

    python bench/bench_pipeline.py [FOLDER] [--clips 4] [--seconds 30] [--models openl3,crepe,madmom,mert]
                                   [--crepe-capacity full] [--device cpu] [--repeats 1] [--smoke]

In one run, on the same clips (FOLDER's audio files, else ``--clips`` generated ``--seconds``-s
clips), each case in its own process so that its peak RSS is its own:

* (a) the classic way: every model loaded once, fp32; then for each file and each model,
  decode, resample, extract and ``np.save``, one after the other, no overlap;
* (b) ``fstore extract`` as a user runs it (``--precision auto``: fp32 on CPU, bf16 on CUDA);
* (c) ``fstore extract --precision bf16``;
* (d) ``fstore extract --precision bf16 --workers auto`` (on a CPU one process per core; its
  wall time includes the workers loading their models, which (b) and (c) leave out).

For each: seconds per clip (the run's wall time, models already loaded), the sum of the
per-model compute (the pipeline's overhead is wall / sum), per-model seconds, peak RSS, and
the speed-up over (a). The machine's GEMM rates are printed alongside (shared machines: the
ratios within one run are what compares). With ``--repeats N`` the cases run in turn N times
(a, b, c, d, a, b, ...), so a slow spell of a shared machine hits all of them, and each case's
fastest run is reported, with every run's seconds per clip below the table. Peak RSS is the
case's own process; (d) also prints its largest worker's. Models whose weights are not on this machine
(OpenL3, MERT) run with official-format random weights (timing does not depend on values);
the output says which. ``--smoke`` is the CI-sized form: two 2-s clips, CREPE tiny, a tiny MERT.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]

#: MERT-v1-95M's config.json with tiny sizes (--smoke): same keys, same model_type
MERT_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def classic(files: list[str], specs: dict[str, dict[str, Any]], device: str, out: Path) -> dict[str, Any]:
    """(a): load each model once (fp32), then file by file, model by model: decode, resample, run, save."""
    import numpy as np

    from featurestore.audio import SongAudio
    from featurestore.extractors import registry
    from featurestore.extractors.base import config_fields

    extractors = []
    for name, options in specs.items():
        cls = registry.get(name)
        fp32 = {"precision": "fp32"} if "precision" in config_fields(cls.Config) else {}
        ext = cls(**options, **fp32)
        ext.load(device)
        extractors.append(ext)
    seconds = dict.fromkeys(specs, 0.0)
    start = time.perf_counter()
    for path in files:
        for ext in extractors:
            t = time.perf_counter()
            wave = SongAudio(path).at(ext.time_axis.sample_rate)  # the classic script decodes per model
            (out / ext.name).mkdir(parents=True, exist_ok=True)
            np.save(out / ext.name / (Path(path).stem + ".npy"), ext.extract(wave))
            seconds[ext.name] += time.perf_counter() - t
    return {"wall": time.perf_counter() - start, "models": seconds}


def fstore_extract(files: list[str], specs: dict[str, dict[str, Any]], device: str, precision: str,
                   out: Path, workers: str = "0") -> dict[str, Any]:
    """(b), (c), (d): ``fstore extract`` in this process, exactly as the command line runs it."""
    import contextlib
    import io

    from featurestore.cli import main

    folder = Path(files[0]).parent
    argv = ["fstore", "extract", str(folder), "--store", str(out / "store.zarr"), "--models", ",".join(specs),
            "--device", device, "--precision", precision, "--workers", workers, "--json", "--quiet"]
    if "crepe" in specs:
        argv += ["--crepe-capacity", specs["crepe"].get("capacity", "full")]
        if specs["crepe"].get("weights_path"):  # no flag: crepe's local weights come from FSTORE_CREPE_WEIGHTS
            os.environ["FSTORE_CREPE_WEIGHTS"] = specs["crepe"]["weights_path"]
    if specs.get("openl3", {}).get("weights_path"):
        argv += ["--openl3-weights", specs["openl3"]["weights_path"]]
    if specs.get("mert", {}).get("model_path"):
        argv += ["--mert-model", specs["mert"]["model_path"]]
    sys.argv = argv
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.suppress(SystemExit):
        main()
    summary = json.loads(stdout.getvalue()[stdout.getvalue().index("{"):])
    if not summary["ok"]:
        raise RuntimeError(f"fstore extract failed: {summary['failures'] or summary['unavailable_models']}")
    # the run loads its models inside (Ctrl-C while loading is an interrupted run): not part of the per-clip cost
    wall = summary["wall_seconds"] - summary["load_seconds"]
    return {"wall": wall, "models": {m: t["seconds"] for m, t in summary["models"].items()}}


def child(args: argparse.Namespace) -> None:
    """One case in its own process; prints its figures as JSON on the last line."""
    job = json.loads(args.child)
    out = Path(job["out"])
    if job["case"] == "classic":
        result = classic(job["files"], job["specs"], job["device"], out)
    else:
        result = fstore_extract(job["files"], job["specs"], job["device"], job["precision"], out, job["workers"])
    import resource

    result["peak_rss_mib"] = peak_rss_mib()
    if job["workers"] != "0":  # the largest worker's
        result["worker_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def run_case(case: str, precision: str, workers: str, files: list[str], specs: dict[str, Any], device: str,
             tmp: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"{case}-{precision}-", dir=tmp))
    job = {"case": case, "precision": precision, "workers": workers, "files": files, "specs": specs, "device": device,
           "out": str(out)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} {precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate_clips(folder: Path, n: int, seconds: float, rate: int = 44100) -> list[str]:
    """``n`` different music-like mono WAV clips of ``seconds`` s."""
    import soundfile as sf

    from featurestore.testing import test_signal

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, test_signal(round(seconds * rate), rate, seed=i), rate, subtype="PCM_16")
        paths.append(str(path))
    return paths


def model_specs(models: list[str], capacity: str, smoke: bool, tmp: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Options per model; OpenL3 and MERT get random official-format weights when theirs are absent."""
    from featurestore.extractors import registry

    specs: dict[str, dict[str, Any]] = {}
    notes = []
    for name in models:
        options: dict[str, Any] = {"capacity": capacity} if name == "crepe" else {}
        cls = registry.get(name)
        available = cls.weights_info(cls.Config(**options)).available
        sys.path.insert(0, str(ROOT))
        if name == "crepe" and not available:
            from tests.helpers import write_crepe_layout

            options["weights_path"] = str(write_crepe_layout(tmp / f"crepe_{capacity}_random.h5", capacity))
            notes.append(f"crepe: random {capacity} weights in crepe's Keras layout (its weights package is not installed)")
        if name == "openl3" and (smoke or not available):
            from tests.helpers import write_official_layout

            options["weights_path"] = str(write_official_layout(tmp / "openl3_random.h5"))
            notes.append("openl3: random weights in the official Keras layout")
        if name == "mert" and (smoke or not available):
            from bench_mert import MERT_95M, write_random_snapshot

            config = {**MERT_95M, **MERT_TINY} if smoke else MERT_95M
            folder = tmp / "mert_random"
            folder.mkdir()
            options["model_path"] = str(write_random_snapshot(folder, config))
            notes.append(f"mert: random weights, {'tiny' if smoke else 'MERT-v1-95M'} architecture")
        specs[name] = options
    return specs, notes


def bf16_refused(device: str) -> str | None:
    """Why ``fstore extract --precision bf16`` is refused on ``device`` (None when it runs)."""
    from featurestore.devices import check_precision_supported

    try:
        check_precision_supported("bf16", device)
    except ValueError as e:
        return str(e)
    return None


def report(cases: dict[str, dict[str, Any]], n_clips: int, models: list[str]) -> None:
    base = cases["(a) classic, fp32"]["wall"]
    header = f"{'case':34}{'s/clip':>8}{'sum':>8}{'wall/sum':>9}{'vs (a)':>8}{'RSS MiB':>9}" + "".join(f"{m:>9}" for m in models)
    print(header)
    for label, r in cases.items():
        total = sum(r["models"].values())
        print(f"{label:34}{r['wall'] / n_clips:8.2f}{total / n_clips:8.2f}{r['wall'] / total:9.2f}{base / r['wall']:7.2f}x"
              f"{r['peak_rss_mib']:9.0f}" + "".join(f"{r['models'].get(m, 0.0) / n_clips:9.2f}" for m in models))
    for label, r in cases.items():
        if r.get("worker_rss_mib"):
            print(f"peak RSS of the largest worker process in {label}: {r['worker_rss_mib']:.0f} MiB")
    print("s/clip: the run's wall time per clip (models loaded; in (d) the workers load theirs inside it); sum: the "
          "per-model compute per clip (decode and resample included in (a)); wall/sum: the pipeline's overhead "
          "(below 1 where songs compute in parallel processes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="audio files to run on (default: generated clips)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--models", default="openl3,crepe,madmom,mert")
    parser.add_argument("--crepe-capacity", default="full")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=1, help="run the three cases in turn this many times; best of each")
    parser.add_argument("--smoke", action="store_true", help="CI size: 2 clips of 2 s, CREPE tiny, tiny MERT")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.clips, args.seconds, args.crepe_capacity = 2, 2.0, "tiny"
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device here")
    from common import gemm_gflops
    from featurestore.discover import gather

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.folder:
            files = [str(f.path) for f in gather([args.folder]).files]
            if len({str(Path(f).parent) for f in files}) != 1:
                sys.exit("FOLDER: the audio files must lie directly in it (no subfolders)")
        else:
            files = generate_clips(tmp / "clips", args.clips, args.seconds)
        specs, notes = model_specs(models, args.crepe_capacity, args.smoke, tmp)
        no_bf16 = bf16_refused(args.device)
        # without bf16 instructions a 4096^3 bf16 GEMM runs in a slow fallback (~9 min on an AVX2-only EPYC)
        bf16_rate = "n/a" if no_bf16 else f"{gemm_gflops('bf16', device=args.device):.0f}"
        print(f"{len(files)} clips, models {', '.join(models)} (crepe {args.crepe_capacity}), device {args.device}, "
              f"{os.cpu_count()} CPUs; {args.device} GEMM 4096^3: fp32 {gemm_gflops('fp32', device=args.device):.0f}, "
              f"bf16 {bf16_rate} GFLOP/s")
        for note in notes:
            print(f"note: {note} (timing does not depend on the values)")
        if no_bf16:
            print(f"note: cases (c) and (d) not run: {no_bf16}")
        labels = {
            "(a) classic, fp32": ("classic", "fp32", "0"),
            "(b) fstore extract, default": ("fstore", "auto", "0"),
            "(c) fstore extract, bf16": ("fstore", "bf16", "0"),
            "(d) bf16, --workers auto": ("fstore", "bf16", "auto"),
        }
        if no_bf16:
            labels = {label: case for label, case in labels.items() if case[1] != "bf16"}
        if args.device.startswith("cuda"):  # --workers auto is 0 on a GPU: (d) would repeat (c)
            del labels["(d) bf16, --workers auto"]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
        for _ in range(max(1, args.repeats)):
            for label, (case, precision, workers) in labels.items():
                runs[label].append(run_case(case, precision, workers, files, specs, args.device, tmp))
    report({label: min(rs, key=lambda r: r["wall"]) for label, rs in runs.items()}, len(files), models)
    if args.repeats > 1:
        for label, rs in runs.items():
            print(f"{label}: s/clip of each run " + ", ".join(f"{r['wall'] / len(files):.2f}" for r in rs))


if __name__ == "__main__":
    main()
