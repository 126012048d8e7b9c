"""Device and precision choices shared by the torch extractors (no torch import at module load)."""

from __future__ import annotations

from typing import Any

DEVICES = ("auto", "cpu", "cuda")
#: what a torch extractor's ``precision`` option takes (``auto`` is resolved before)
MODEL_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = ("auto", *MODEL_PRECISIONS)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu``; ``cuda:N`` passes through."""
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"--device {device}: no CUDA device is available here")
        elif device != "cpu":
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} or cuda:N")
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` on CPU (the parity-exact default); others pass through."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") else "fp32"


def exact_fp32_on_cuda() -> None:
    """Make fp32 mean fp32 on CUDA: torch lets cuDNN convolutions use TF32 (10-bit mantissa)
    by default, which would put fp32 results far outside the parity tolerances."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a model precision: float32, bfloat16 or float16."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def check_precision_supported(precision: str, device: str) -> None:
    """Refuse a precision the device cannot run usefully, saying why and what to use instead.

    On a CPU, fp16 has no fast kernels and a narrow range (overflow in the frontends): refused.
    bf16 needs bf16 instructions (AVX512-BF16 or AMX) to be faster than fp32; without them it is
    refused where the flags can be read (Linux).
    """
    if device != "cpu":
        return
    if precision == "fp16":
        raise ValueError("--precision fp16 on a CPU: CPUs have no fast fp16 kernels and fp16's range overflows "
                         "in the spectrogram frontends; use fp32 (exact, the default) or bf16 on a CPU with "
                         "AVX512-BF16 or AMX")
    flags = cpu_flags()
    if precision == "bf16" and flags is not None and not flags & {"avx512_bf16", "amx_bf16"}:
        raise ValueError("--precision bf16: this CPU has no bf16 instructions (neither avx512_bf16 nor amx_bf16 in "
                         "/proc/cpuinfo), so bf16 would be slower than fp32 and less exact; use fp32")


#: memory budgeted per local worker process: the four models loaded plus MERT's activations
#: (a 60-s batch of windows) and a long song's audio, measured at ~2.1 GiB peak for a
#: 20-minute song on CPU
WORKER_MEMORY_BYTES = 3 << 30
#: cores per CPU worker process. One: songs are independent, while a song's models scale poorly
#: over threads (decoding, resampling, CREPE's Viterbi, madmom and the element-wise passes
#: between the GEMMs run on one core). On a 2-core AMX Xeon, four models in bf16: 2 processes of
#: 1 thread did 4 clips in 75-81 s, 1 process of 2 threads in 107-123 s
WORKER_CORES = 1


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, else all)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def auto_workers(device: str, songs: int | None = None, cores: int | None = None, memory: int | None = None) -> int:
    """Local worker processes for ``--workers auto``: 0 (work in this process) or N >= 2.

    On a GPU: 0. One process owns the device; it decodes ahead and runs the CPU-only models
    in a thread beside the GPU's. On a CPU: one process per ``WORKER_CORES`` cores, at most one
    per ``WORKER_MEMORY_BYTES`` of available memory and one per song to compute (``songs``,
    when known); 0 when that makes one process.
    """
    if device != "cpu":
        return 0
    cores = usable_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    processes = cores // WORKER_CORES
    if memory is not None:
        processes = min(processes, memory // WORKER_MEMORY_BYTES)
    if songs is not None:
        processes = min(processes, songs)
    return processes if processes >= 2 else 0
