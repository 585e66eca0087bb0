"""Training precision, the `dtype` option every trained method has.

- `float32` / `float64`: weights, activations and gradients in that dtype (the release ran float64).
- `bf16-mixed` / `fp16-mixed`: float32 master weights, the forward under `torch.autocast` in bfloat16 / float16
  (tensor-core GEMMs and convolutions on GPUs; bf16 also runs on CPUs, where AVX-512-BF16 / AMX make the large
  paper-scale convolutions faster). fp16 needs a loss scaler and CUDA; bf16 needs neither.

Parts whose numbers must not be rounded run in float32 whatever the mode: codebook assignment, EMA updates and
commitment (`full_precision` on the quantizers: a bf16 argmin over 400 codes would pick near-ties at random), and
the MI estimators' likelihood fits (their gradients are small and have no scaler). The precision is part of the
method config, hence of the cell and pretraining keys: mixed-precision numbers are never mixed up with float32 ones.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

# name -> (parameter dtype, autocast dtype or None)
PRECISIONS: dict[str, tuple[torch.dtype, torch.dtype | None]] = {
    "float32": (torch.float32, None),
    "float64": (torch.float64, None),
    "bf16-mixed": (torch.float32, torch.bfloat16),
    "fp16-mixed": (torch.float32, torch.float16),
}
DTYPES = {name: pair[0] for name, pair in PRECISIONS.items()}   # parameter dtype per precision name


def autocast_dtype(name: str) -> torch.dtype | None:
    return PRECISIONS[name][1]


def check_device(name: str, device: str) -> str | None:
    """A one-line reason why `name` cannot run on `device`, or None."""
    if name == "fp16-mixed" and not str(device).startswith("cuda"):
        return (f"dtype=fp16-mixed needs a CUDA device (loss scaling of float16 gradients); got --device {device}. "
                f"Use dtype=bf16-mixed on CPU")
    return None


def autocast(name: str, device: str | torch.device):
    """Context for the forward pass: autocast in the mixed dtype, a no-op for the full-precision modes."""
    dtype = autocast_dtype(name)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(name: str, device: str | torch.device):
    """A loss scaler for fp16-mixed (float16 gradients underflow without one), else None."""
    if name != "fp16-mixed":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def upcast(value: Any) -> Any:
    """float16 / bfloat16 tensors (also inside dicts, lists, tuples) as float32; anything else unchanged."""
    if torch.is_tensor(value) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    if isinstance(value, dict):
        return {k: upcast(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):          # a NamedTuple
        return type(value)(*(upcast(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(upcast(v) for v in value)
    return value


def full_precision(fn):
    """Run `fn` with autocast off and half-precision tensor arguments (also inside dicts) cast to float32."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return fn(*args, **kwargs)
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*[upcast(a) for a in args], **{k: upcast(v) for k, v in kwargs.items()})
    return wrapper
