"""Mixed precision (issue 9): `dtype=bf16-mixed|fp16-mixed` trains every method with float32 weights and an
autocast forward, keeps codebook assignment in float32, refuses fp16 without CUDA, and is part of the keys.
Issue 13: a mode the device cannot run (a bf16 LSTM on a CPU without AVX-512-BF16 / AMX) is refused up front; tests
that need such a mode skip with the probe's reason (CI runs this file a second time with ONEDNN_MAX_CPU_ISA=AVX2)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark import registry, runner, spec
from benchmark.__main__ import main as cli
from benchmark.contracts import UserError
from methods import precision
from methods.precision import autocast, check_device, full_precision, grad_scaler, upcast
from methods.quantizers import MultiModalEMAQuantizer
from methods.trainer import EstimatorFitter, Step, adam, main_parameters, train_step

ROOT = Path(__file__).resolve().parent.parent.parent
SHAPES = {"audio": (6, 12), "video": (6, 3, 3, 16), "text": (6, 20)}
METHODS = sorted(n for n, e in registry.entries("method").items() if "dtype" in e.options)   # the shared trainer's
BF16_CPU = precision.probe("bf16-mixed", "cpu")   # None, or what this CPU lacks for a bf16 LSTM
needs_bf16_lstm = pytest.mark.skipif(BF16_CPU is not None, reason=f"bf16-mixed on this CPU: {BF16_CPU}")


def skip_unless_runs(model, mode: str = "bf16-mixed") -> None:
    """Skip (naming the missing capability) when the model has an LSTM and the CPU cannot run one in `mode`."""
    reason = precision.probe(mode, "cpu")
    if reason is not None and any(isinstance(m, torch.nn.LSTM) for m in model.modules()):
        pytest.skip(f"{mode} LSTM on this CPU: {reason}")


def one_step(name: str, precision: str, scaler=None):
    entry = registry.get("method", name)
    method = entry.load()
    settings = method.settings({**entry.defaults(), "dtype": precision, "code_dim": 16, "codebook_size": 32})
    torch.manual_seed(0)
    model = method.build_model(SHAPES, settings).train()
    skip_unless_runs(model, precision)
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.rand(8, *shape, generator=g) for m, shape in SHAPES.items()}
    if "labels" in settings:
        batch["labels"] = torch.randint(0, 3, (8,), generator=g)
    params = main_parameters(model)
    optimizer = adam(params, settings["lr"])
    estimators = model.estimators() if hasattr(model, "estimators") else {}
    fitter = EstimatorFitter(estimators, 2, 1e-3)
    groups = [list(p) for p in model.clip_groups()] if hasattr(model, "clip_groups") else [params]
    before = [p.detach().clone() for p in params]
    losses, total = train_step(model, batch, optimizer, Step(0, 0, g, fitter), settings["clip"], groups, precision,
                               scaler)
    return model, params, before, losses, total


@pytest.mark.parametrize("name", METHODS)
def test_bf16_mixed_step_trains_float32_weights_on_cpu(name):
    model, params, before, losses, total = one_step(name, "bf16-mixed")
    assert torch.isfinite(total) and total.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(params, before)), "no parameter moved"


def test_autocast_really_lowers_the_forward_and_quantizer_stays_float32():
    lin = torch.nn.Linear(4, 4)
    x = torch.rand(3, 4)
    with autocast("bf16-mixed", "cpu"):
        assert lin(x).dtype == torch.bfloat16
    with autocast("float32", "cpu"):
        assert lin(x).dtype == torch.float32
    q = MultiModalEMAQuantizer(("audio", "video"), 16, 4, generator=torch.Generator().manual_seed(1)).eval()
    z = torch.randn(2, 3, 4)
    ref_codes, ref_idx = q.quantize(z)
    with autocast("bf16-mixed", "cpu"):
        codes, idx = q.quantize(z.bfloat16().float())   # same values; the argmin must run in float32
        logits = q.distance_logits(z)
    assert codes.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.equal(idx, q.quantize(z.bfloat16().float())[1])
    assert ref_idx.shape == idx.shape and ref_codes.dtype == codes.dtype


def test_full_precision_upcasts_nested_half_tensors():
    seen = {}

    @full_precision
    def f(pairs):
        seen.update({k: (x.dtype, y.dtype, torch.is_autocast_enabled("cpu")) for k, (x, y) in pairs.items()})

    with autocast("bf16-mixed", "cpu"):
        f({"a": (torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.float16))})
    assert seen == {"a": (torch.float32, torch.float32, False)}
    assert upcast(torch.ones(1, dtype=torch.float64)).dtype == torch.float64   # never downcasts
    from methods.mutual_info import DistinctRows
    rows = upcast(DistinctRows(torch.ones(2, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.long)))
    assert isinstance(rows, DistinctRows) and rows.values.dtype == torch.float32 and rows.inverse.dtype == torch.long


@needs_bf16_lstm
def test_loss_scaler_path_unscales_before_clipping():
    """The fp16 path (scaler: scale, unscale, clip, step, update) on CPU with a CPU scaler: a finite step that
    moves the weights and keeps the scale (no overflow)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    model, params, before, losses, total = one_step("dcid", "bf16-mixed", scaler)
    assert torch.isfinite(total)
    assert any(not torch.equal(p, b) for p, b in zip(params, before))
    assert scaler.get_scale() == 2.0 ** 10
    assert grad_scaler("fp16-mixed", "cpu") is not None and grad_scaler("bf16-mixed", "cpu") is None


def test_precision_is_in_the_key_and_float32_keys_are_unchanged():
    plain = spec.parse_method("dcid")
    assert spec.parse_method("dcid@dtype=float32").resolved() == plain.resolved()
    mixed = spec.parse_method("dcid@dtype=bf16-mixed")
    assert spec.pretrain_key(mixed, "c", 0) != spec.pretrain_key(plain, "c", 0)
    assert mixed.canonical() == "dcid@dtype=bf16-mixed"


def test_fp16_without_cuda_is_a_one_line_user_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: fp16-mixed is allowed")
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "dcid@dtype=fp16-mixed,epochs=1",
                          "--task", "ave", "--profile", "smoke", "--results", str(tmp_path), "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "fp16-mixed needs a CUDA device" in lines[0]
    assert not (tmp_path / "cells").exists()


# -- issue 13: a mode the device cannot run is refused before anything runs ---------------------------------------
def test_probe_answers_once_per_process_and_leaves_the_rng_alone(monkeypatch):
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    assert check_device("float32", "cpu") is None and check_device("float64", "cpu") is None
    state = torch.random.get_rng_state()
    first = precision.probe("bf16-mixed", "cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert precision.probe("bf16-mixed", "cpu") == first and precision._probe.cache_info().hits >= 1
    if first is not None:   # an AVX2-only CPU (or ONEDNN_MAX_CPU_ISA=AVX2): the reason names what is missing
        assert "AVX-512-BF16" in first and "\n" not in first


def test_forced_unsupported_mode_is_a_user_error_naming_mode_device_and_alternatives(monkeypatch):
    monkeypatch.setenv(precision.FORCE_ENV, "bf16-mixed")
    reason = check_device("bf16-mixed", "cpu")
    assert reason.startswith("dtype=bf16-mixed cannot run on --device cpu") and "\n" not in reason
    assert "dtype=float32" in reason and "AVX-512-BF16" in reason and "GPU" in reason
    assert check_device("float32", "cpu") is None
    cells = runner.plan(["dcid@dtype=bf16-mixed"], ["ave"], [0], None)
    with pytest.raises(UserError, match="dcid@dtype=bf16-mixed: dtype=bf16-mixed cannot run"):
        runner.check_device("cpu", cells)
    monkeypatch.delenv(precision.FORCE_ENV)
    assert (check_device("bf16-mixed", "cpu") is None) == (BF16_CPU is None)   # the real probe again


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "dtype=bf16-mixed cannot run on --device cpu" in lines[0] and "dtype=float32" in lines[0]
    return lines[0]


def test_run_refuses_an_unsupported_mode_in_one_line_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, precision.FORCE_ENV: "bf16-mixed"}
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "dcid@dtype=bf16-mixed", "--task",
                          "ave", "--profile", "smoke", "--results", str(results), "-q"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    _one_error_line(out.stderr)
    assert not (results / "cells").exists() and not (results / "pretrain").exists()
    assert not results.exists()   # not even the world was generated


@pytest.mark.parametrize("command", ["pretrain", "grid"])
def test_pretrain_and_grid_refuse_it_before_anything_runs(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(precision.FORCE_ENV, "bf16-mixed")
    results = tmp_path / "results"
    common = ["--profile", "smoke", "--results", str(results), "-q"]
    if command == "pretrain":
        argv = ["pretrain", "--method", "fccid", "dcid@dtype=bf16-mixed", *common]
    else:
        grid = tmp_path / "g.yaml"
        grid.write_text("methods: [turn, dcid@dtype=bf16-mixed]\ntasks: [ave]\nseeds: [0]\n")
        argv = ["grid", str(grid), *common]
    assert cli(argv) == 2
    _one_error_line(capsys.readouterr().err)
    assert not results.exists()
