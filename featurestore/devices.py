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
