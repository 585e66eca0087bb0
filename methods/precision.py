"""Training precision, the `dtype` option every trained method has.

- `float32` / `float64`: weights, activations and gradients in that dtype (the release ran float64).
- `bf16-mixed` / `fp16-mixed`: float32 master weights, the forward under `torch.autocast` in bfloat16 / float16
  (tensor-core GEMMs and convolutions on GPUs; bf16 also runs on CPUs, where AVX-512-BF16 / AMX make the large
  paper-scale convolutions faster). fp16 needs a loss scaler and CUDA; bf16 needs neither, but a bf16 LSTM on a
  CPU needs oneDNN's AVX-512-BF16 or AMX kernels (`check_device` probes the device once per process and refuses a
  mode it cannot run before anything runs).

Parts whose numbers must not be rounded run in float32 whatever the mode: codebook assignment, EMA updates and
commitment (`full_precision` on the quantizers: a bf16 argmin over 400 codes would pick near-ties at random), and
the MI estimators' likelihood fits (their gradients are small and have no scaler). The precision is part of the
method config, hence of the cell and pretraining keys: mixed-precision numbers are never mixed up with float32 ones.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
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


FORCE_ENV = "UNIBENCH_FORCE_UNSUPPORTED"   # comma-separated precision names the probe must call unsupported (tests)


def check_device(name: str, device: str) -> str | None:
    """A one-line reason why `name` cannot run on `device`, or None (probes the device once per process)."""
    device = str(device)
    if name == "fp16-mixed" and not device.startswith("cuda"):
        instead = "dtype=bf16-mixed" if probe("bf16-mixed", device) is None else "dtype=float32"
        return (f"dtype=fp16-mixed needs a CUDA device (loss scaling of float16 gradients); got --device {device}. "
                f"Use {instead} on this CPU")
    if autocast_dtype(name) is None:
        return None                              # float32 / float64 run everywhere
    reason = probe(name, device)
    if reason is None:
        return None
    alternative = "a CUDA GPU or a CPU with AVX-512-BF16 / AMX" if device == "cpu" else "another GPU"
    return (f"dtype={name} cannot run on --device {device}: {reason}. Use dtype=float32, or run it on "
            f"{alternative}")


def probe(name: str, device: str) -> str | None:
    """Whether `name` runs on `device`: None, or what is missing. `UNIBENCH_FORCE_UNSUPPORTED=bf16-mixed` forces
    the answer (read on every call; the real probe runs once per process and device)."""
    forced = {m.strip() for m in os.environ.get(FORCE_ENV, "").split(",")}
    if name in forced:
        return f"unsupported by request ({FORCE_ENV}={os.environ[FORCE_ENV]})"
    if autocast_dtype(name) is None:
        return None
    return _probe(name, str(device))


@functools.lru_cache(maxsize=None)
def _probe(name: str, device: str) -> str | None:
    """A tiny LSTM + linear forward and backward under autocast in the mode's dtype, as training runs them (float32
    weights). The global RNG state is left as it was, so probing never changes a seeded run."""
    dev = torch.device(device)
    half = str(autocast_dtype(name)).removeprefix("torch.")
    gpus = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=gpus), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            lstm = torch.nn.LSTM(8, 8, batch_first=True, bidirectional=True).to(dev)
            head = torch.nn.Linear(16, 4).to(dev)
            x = torch.randn(2, 3, 8, device=dev)
            with torch.autocast(device_type=dev.type, dtype=autocast_dtype(name)):
                out, _ = lstm(x)
                loss = head(out).float().square().mean()
            loss.backward()
            if not all(p.grad is not None and bool(torch.isfinite(p.grad).all())
                       for p in [*lstm.parameters(), *head.parameters()]):
                return f"a {half} LSTM step gave no finite gradients on {device}"
    except Exception as exc:  # noqa: BLE001 - any failure means the mode cannot run here
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")   # oneDNN adds a hint
        what = f"{type(exc).__name__}: {first}".rstrip(": ")
        if dev.type == "cpu":
            return f"this CPU has no {half} LSTM kernel (oneDNN needs AVX-512-BF16 or AMX; {what})"
        return f"a {half} LSTM step failed ({what})"
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
