"""What a trial ran on, for the results' `device` column and the benchmarks' banners.

CPUs round differently (oneDNN picks AMX, AVX-512 or AVX2 kernels by the CPU and by
ONEDNN_MAX_CPU_ISA), and a learning result can flip with the kernel path; so every result row says
which CPU, which ISA flags and which forced ISA cap it was made under, e.g.

    cpu fp32 · Intel(R) Xeon(R) Processor (family 6 model 207) · AVX-512 yes, AVX512-BF16 no, AMX no · ONEDNN_MAX_CPU_ISA=AVX2
"""
from __future__ import annotations

import os
import platform

ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")     # switches that change the kernels used


def cpu_model_and_flags() -> tuple[str, set[str], str, str]:
    """(model name, /proc/cpuinfo flags, family, model) of the first processor ('unknown', empty
    and '?' where /proc/cpuinfo is not readable, e.g. off Linux)."""
    name, flags, fam, model = platform.processor() or "unknown", set(), "?", "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    name = value
                elif key == "flags":
                    flags = set(value.split())
                elif key == "cpu family":
                    fam = value
                elif key == "model":
                    model = value
                elif not line.strip() and flags:
                    break                      # the first processor is enough
    except OSError:
        pass
    return name, flags, fam, model


def isa_summary(flags: set[str]) -> str:
    """'AVX-512 yes, AVX512-BF16 no, AMX no' (the three that decide the fast paths here)."""
    def yn(ok: bool) -> str:
        return "yes" if ok else "no"
    return (f"AVX-512 {yn('avx512f' in flags)}, AVX512-BF16 {yn('avx512_bf16' in flags)}, "
            f"AMX {yn({'amx_tile', 'amx_bf16'} <= flags)}")


def forced_isa() -> str:
    """'ONEDNN_MAX_CPU_ISA=AVX2' for each kernel switch set in the environment; '' if none is."""
    return " ".join(f"{k}={os.environ[k]}" for k in ISA_ENV if os.environ.get(k))


def device_description(device: str, precision: str) -> str:
    """The `device` column: the torch device (or the sweep's GPU label) and the precision, and for
    a CPU its model, ISA flags and any forced ISA cap."""
    parts = [f"{device} {precision}"]
    if device == "cpu":
        name, flags, fam, model = cpu_model_and_flags()
        parts += [f"{' '.join(name.split())} (family {fam} model {model})", isa_summary(flags)]
        forced = forced_isa()
        if forced:
            parts.append(forced)
    return " · ".join(parts)
