"""Numeric precision and memory layout for training and evaluation: fp32 or bf16 autocast.

`resolve_precision(requested, device)` turns the config value
(`train.precision: auto | fp32 | bf16`) into a `Precision`:

- `fp32`: no autocast.
- `bf16`: torch.autocast(bfloat16) around forward passes; the loss is computed in fp32.
- `auto`: on CUDA, bf16 where the card supports it (Ampere and later). On a CPU, bf16 where the
  CPU has native bf16 instructions (AMX-BF16 or AVX512-BF16, from torch.cpu.get_capabilities());
  without them bf16 is emulated and slower than fp32. Detected, not timed: a timing taken on a
  shared, busy CPU flips from run to run (seen: 0.3x to 2x for the same convolution within
  a minute), and a trial must not change precision when it is rerun or resumed. Measured on an
  AMD EPYC (AVX512-BF16, no AMX; 1 thread; `python -m deepthink.precision`): one convolution,
  forward + backward, runs 1.6-2.1x faster in bf16 at widths 128-512, 1D and 2D alike (the
  bf16 dot-product instruction does twice the work of an fp32 FMA; AMX would do far more). The
  trainer stores the resolved precision in the checkpoint.

Models and inputs use channels-last memory on every device (every conv is a Conv2d, 1D ones
with a (1, 3) kernel; measured here: faster for fp32 and bf16 alike). A 1D input (N, C, L) is
stored as (N, L, C) (`prepare_inputs`) so that the (N, C, 1, L) view the net takes of it has
channels-last strides: with plain (N, C, L) strides the recall concatenation came out NCHW and the
recall conv copied it back to channels-last at every iteration.

Under autocast, `cast_for_autocast(x)` casts the input once per batch to the autocast dtype: the
recurrence concatenates x to the (bf16) state at every iteration, and `torch.cat([bf16 state,
fp32 x])` promotes to fp32, which the recall conv then casts back to bf16 - two copies of the
whole (w + in)-channel tensor per iteration (the issue measured ~7.5% of a bf16 step on an AMX
CPU). Casting x first gives bit-identical values (cat then cast = cast then cat) without them.

Also here: `flush_subnormal_(model)`. With weight decay, weights of unused channels can drift below
float32's smallest normal number, and fp32 CPU kernels then slow down ~8x (DESIGN.md section 8);
`torch.set_flush_denormal` only covers the calling thread, so the trainer zeroes such weights
itself once per epoch (values < 1.2e-38, far below anything that changes an output).

    python -m deepthink.precision      # what 'auto' picks here, and bf16 vs fp32 timings of one conv
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")     # the one list: train.precision, `deepthink train --precision`


@dataclass(frozen=True)
class Precision:
    name: str                  # 'fp32' | 'bf16' (never 'auto': resolved)
    device_type: str           # 'cpu' | 'cuda' | ...
    channels_last: bool        # NHWC memory layout for the (2D-conv) model and 4D inputs

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for forward passes (training and evaluation)."""
        if self.name == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> channels-last copy; (N, C, L) -> stored as (N, L, C), so that the
        net's (N, C, 1, L) view of it is channels-last (same values, same shape)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        if self.channels_last and x.dim() == 3:         # explicit strides: contiguous() keeps a C=1 view as is
            n, c, length = x.shape
            return x.new_empty((n, length, c)).copy_(x.transpose(1, 2)).transpose(1, 2)
        return x


def cast_for_autocast(x: torch.Tensor) -> torch.Tensor:
    """`x` in the dtype of the autocast region active on its device (once per batch, before the
    iterations that concatenate it to the state); unchanged outside autocast (fp32: the same
    tensor object) and for non-float tensors."""
    kind = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(kind):
        return x.to(torch.get_autocast_dtype(kind))
    return x


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """`requested` in PRECISIONS -> Precision for `device`."""
    device = torch.device(device)
    channels_last = True    # every model runs 2D convs (1D ones with a (1, 3) kernel)
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision: found {requested!r}; expected one of {list(PRECISIONS)}")
    if requested == "fp32":
        return Precision("fp32", device.type, channels_last)
    if requested == "bf16":
        if not bf16_supported(device):
            raise ValueError(f"train.precision: bf16 requested but device {device} does not support "
                             f"bfloat16; use fp32 or auto")
        return Precision("bf16", device.type, channels_last)
    if device.type == "cuda":
        return Precision("bf16" if bf16_supported(device) else "fp32", device.type, channels_last)
    if device.type == "cpu" and native_cpu_bf16():
        return Precision("bf16", device.type, channels_last)
    return Precision("fp32", device.type, channels_last)


def native_cpu_bf16() -> bool:
    """True if this CPU has bf16 dot-product instructions (AMX-BF16 or AVX512-BF16)."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):          # older torch: read the kernel's CPU flags
        try:
            with open("/proc/cpuinfo") as fh:
                flags = set(fh.read().split())
        except OSError:
            return False
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def measure_bf16_speedup(dims: int, width: int, spatial: tuple[int, ...], channels_last: bool,
                         batch: int = 16, reps: int = 3) -> float:
    """fp32 time / bf16 time of one width->width conv, forward + backward, on the CPU (diagnostic).

    The caller's global RNG stream is left untouched (a trial's results must not depend on
    whether this ran)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _measure(dims, width, spatial, channels_last, batch, reps)


def _measure(dims: int, width: int, spatial: tuple[int, ...], channels_last: bool, batch: int,
             reps: int) -> float:
    spatial = (1, *spatial) if dims == 1 else spatial          # 1D nets run (1, 3) Conv2d
    conv = nn.Conv2d(width, width, (1, 3) if dims == 1 else 3, padding=(0, 1) if dims == 1 else 1, bias=False)
    x = torch.randn(batch, width, *spatial)                     # (B, w, *S)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def once(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
        y.float().sum().backward()
        return time.perf_counter() - start

    best = {False: float("inf"), True: float("inf")}
    for bf16 in (False, True):          # warm-up: first calls pick/compile kernels
        once(bf16)
    for _ in range(reps):               # interleaved, best of reps: robust to a busy shared CPU
        for bf16 in (False, True):
            best[bf16] = min(best[bf16], once(bf16))
    return best[False] / best[True]


@torch.no_grad()
def flush_subnormal_(model: nn.Module) -> None:
    """Set float32 weights with |w| below the smallest normal number to exactly 0 (in place)."""
    tiny = torch.finfo(torch.float32).tiny
    for p in model.parameters():
        if p.dtype == torch.float32:
            p.masked_fill_(p.abs() < tiny, 0.0)


if __name__ == "__main__":
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    print(f"native bf16: {native_cpu_bf16()} -> 'auto' picks {resolve_precision('auto', 'cpu').name} on the CPU")
    for dims, width, spatial in [(1, 128, (32,)), (1, 400, (32,)), (2, 128, (24, 24)), (2, 512, (8, 8))]:
        speedup = measure_bf16_speedup(dims, width, spatial, channels_last=True, batch=64)
        print(f"one conv, fwd+bwd, batch 64, width {width}, input {spatial}: bf16 {speedup:.2f}x fp32")
