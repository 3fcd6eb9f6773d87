"""What a benchmark table was measured on: printed at the top of every table in benchmarks/.

    CPU: Intel(R) Xeon(R) Processor (family 6 model 207), 2 logical CPUs, this process on [1]
    flags: avx512f yes, avx512_bf16 no, amx_tile no, amx_bf16 no  ->  AMX: no
    ONEDNN_MAX_CPU_ISA=(unset)  ATEN_CPU_CAPABILITY=(unset)  oneDNN ISA in use: Intel AVX-512 ...
    torch 2.13.0+cpu (ATen kernels: AVX512), 1 thread(s), 2026-11-29 12:00 UTC

The flags are the kernel's (/proc/cpuinfo: what a hypervisor exposes, which is what counts);
"oneDNN ISA in use" is what oneDNN itself reports (ONEDNN_VERBOSE) for a tiny convolution run in a
child process under the same environment, so a forced `ONEDNN_MAX_CPU_ISA` shows up there.
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys

import torch

from deepthink import hardware

FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
_PROBE = ("import torch; torch.set_num_threads(1); cl = torch.channels_last; "    # a conv that takes oneDNN
          "torch.nn.functional.conv2d(torch.randn(4, 64, 1, 32).contiguous(memory_format=cl), "
          "torch.randn(64, 64, 1, 3).contiguous(memory_format=cl), padding=(0, 1))")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    name, flags, fam, model = hardware.cpu_model_and_flags()
    return f"{name} (family {fam} model {model})", flags


def onednn_isa() -> str:
    """The ISA oneDNN reports, and the kernel it picks for an fp32 channels-last convolution, in a
    child process with this environment."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (probe failed)"
    isa = kernel = "unknown"
    for line in out.splitlines():
        if ",isa:" in line:
            isa = line.split(",isa:", 1)[1].strip()
        if ",exec," in line and ",convolution," in line:
            kernel = line.split(",convolution,", 1)[1].split(",", 1)[0]
    return f"{isa} (fp32 conv kernel: {kernel})"


def cpu_banner() -> str:
    name, flags = cpu_model_and_flags()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = "?"
    has = " ".join(f"{f} {'yes' if f in flags else 'no'}," for f in FLAGS).rstrip(",")
    amx = "yes" if {"amx_tile", "amx_bf16"} <= flags else "no"
    env = "  ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"CPU: {name}, {os.cpu_count()} logical CPUs, this process on {affinity}\n"
            f"flags: {has}  ->  AMX: {amx}\n"
            f"{env}  oneDNN ISA in use: {onednn_isa()}\n"
            f"torch {torch.__version__} (ATen kernels: {torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} thread(s), {now}")


if __name__ == "__main__":
    print(cpu_banner())
