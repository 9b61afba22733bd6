"""Where a run computes and in which precision: the device, the processor's bf16 capability, autocast, and the
console that run messages go to (stderr, so that stdout stays clean for --json output)."""

from __future__ import annotations

import platform
from contextlib import nullcontext
from pathlib import Path

import torch
from rich.console import Console

from tinylm.config import Device, Precision
from tinylm.errors import TinyLMError

console = Console(stderr=True, soft_wrap=True)


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name() -> str:
    """The processor's model name, for benchmark and run reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 where the device runs it natively, else fp32; an explicit bf16 on emulating hardware warns."""
    Precision.check("--precision", requested)
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        console.print("[yellow]warning:[/] bf16 is emulated on this processor and much slower than fp32")
    return requested


def resolve_device(requested: str = "auto") -> torch.device:
    Device.check("--device", requested)
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TinyLMError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(requested)


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
