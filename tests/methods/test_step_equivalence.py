"""Pins every loss term and the gradients of two training steps of each trained method on one small fixed batch.

Why: the pretraining step is optimised for speed (distinct prompts through the text BiLSTM once, fused code
matching, batched estimator fits, ...); each such change must compute the same function. The values in
`fixtures/step_pins.json` were recorded on the code before those optimisations; this test proves they still come
out (float64, so only rounding differs). A deliberate change of a loss re-records them, in the same commit:
`python tests/methods/test_step_equivalence.py --record CASE` (TURN's was, when its codebook split changed in ee31577).

The batch repeats its text rows (5 prompts over 12 clips), as the pretraining corpus does (one prompt per class),
so the paths that encode each distinct row once are exercised.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark import registry
from methods.trainer import EstimatorFitter, Step, adam, main_parameters, train_step

PINS = Path(__file__).parent.parent / "fixtures" / "step_pins.json"
METHODS = ["codis", "turn", "cmcm", "simmmdg", "dcid", "fccid", "srcid"]
CASES = {m: ({"audio": (6, 16), "video": (6, 24), "text": (6, 20)}, {}) for m in METHODS}
CASES["dcid-maps"] = ({"audio": (6, 16), "video": (6, 5, 5, 8), "text": (6, 20)}, {})   # the spatial video path
CASES["srcid"] = (CASES["srcid"][0], {"warm_epoch": 0})                                  # both layers on
BATCH, PROMPTS, STEPS = 12, 5, 2
RTOL, ATOL = 1e-7, 1e-10


def fixed_batch(shapes: dict) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    classes = torch.randint(0, PROMPTS, (BATCH,), generator=g)
    batch = {m: torch.randn(BATCH, *shape, generator=g, dtype=torch.float64) for m, shape in shapes.items()
             if m != "text"}
    batch["text"] = torch.randn(PROMPTS, *shapes["text"], generator=g, dtype=torch.float64)[classes]
    batch["labels"] = classes
    return batch


def run_steps(case: str) -> dict:
    """Losses of each of `STEPS` steps, then the gradient norm of every parameter after the last step."""
    shapes, options = CASES[case]
    entry = registry.get("method", case.split("-")[0])
    method = entry.load()
    settings = method.settings({**entry.defaults(), **options, "dtype": "float64"})
    torch.manual_seed(0)
    model = method.build_model(shapes, settings).to(torch.float64).train()
    batch = fixed_batch(shapes)
    batch = {m: batch[m] for m in model.modalities}
    params = main_parameters(model)
    optimizer = adam(params, settings["lr"])
    estimators = model.estimators() if hasattr(model, "estimators") else {}
    fitter = EstimatorFitter(estimators, settings.get("mi_steps", 5), settings.get("mi_lr", 1e-3))
    groups = [list(g) for g in model.clip_groups()] if hasattr(model, "clip_groups") else [params]
    generator = torch.Generator().manual_seed(0)
    losses = []
    for index in range(STEPS):
        out, total = train_step(model, batch, optimizer, Step(1, index, generator, fitter), settings["clip"], groups,
                                "float64")
        losses.append({**{k: float(v.detach()) for k, v in out.items()}, "total": float(total.detach())})
    grads = {name: float(p.grad.norm()) for name, p in model.named_parameters() if p.grad is not None}
    return {"losses": losses, "grad_norms": grads}


@pytest.fixture(scope="module")
def pins() -> dict:
    return json.loads(PINS.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_step_losses_and_gradients_are_pinned(pins, case):
    got, want = run_steps(case), pins[case]
    for i, (g, w) in enumerate(zip(got["losses"], want["losses"])):
        assert sorted(g) == sorted(w), f"{case} step {i}: loss terms changed"
        for k in w:
            assert g[k] == pytest.approx(w[k], rel=RTOL, abs=ATOL), f"{case} step {i}: {k}"
    assert sorted(got["grad_norms"]) == sorted(want["grad_norms"]), f"{case}: parameters with gradients changed"
    for k, w in want["grad_norms"].items():
        assert got["grad_norms"][k] == pytest.approx(w, rel=RTOL, abs=ATOL), f"{case}: gradient of {k}"


def test_text_front_end_runs_once_per_distinct_clip():
    from methods.base import resolve_settings
    from methods.encoders import ModalityBranch
    torch.manual_seed(0)
    branch = ModalityBranch("text", (6, 20), resolve_settings({}), text_front=True).double()
    seen = []
    branch.front.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    x = fixed_batch(CASES["dcid"][0])["text"]
    assert torch.allclose(branch.inputs(x), branch.front.lstm(x)[0], rtol=1e-12, atol=1e-12)
    assert seen == [PROMPTS]                    # the hook saw the 5 distinct prompts, not the 12 clips
    x = x.clone().requires_grad_()              # an input that needs its own gradient goes through whole
    branch.inputs(x)
    assert seen[-1] == BATCH


def test_fused_code_assignment_matches_the_ops_it_replaces():
    from methods.alignment import FixedCodebookAssignment, code_distributions, soft_code_assignment
    from methods.quantizers import MultiModalEMAQuantizer, distance_logits
    g = torch.Generator().manual_seed(3)
    codebook = torch.randn(7, 5, generator=g, dtype=torch.float64)
    z = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    z[0, 0] = codebook[2]                                   # a zero distance: clamped, no gradient through it
    weights = torch.randn(4, 7, generator=g, dtype=torch.float64)
    for scale in (2.0, 0.0):                                # 0: uniform assignments, no gradient
        grads = []
        for fn in (lambda v: soft_code_assignment(distance_logits(v, codebook) * scale),
                   lambda v: FixedCodebookAssignment.apply(v, codebook, scale)):
            v = z.clone().requires_grad_()
            p = fn(v)
            (p * weights).sum().backward()
            grads.append((p.detach(), v.grad))
        for want, got in zip(*grads):
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    quantizer = MultiModalEMAQuantizer(["audio", "video"], 7, 5)
    probs = code_distributions(quantizer, {"audio": z.float().requires_grad_()})
    assert type(probs["audio"].grad_fn).__name__ == "FixedCodebookAssignmentBackward"


@pytest.mark.parametrize("layers, bidirectional", [(2, True), (1, False)])
def test_written_out_lstm_is_the_module(layers, bidirectional):
    from methods.recurrent import lstm_outputs, written_out
    torch.manual_seed(0)
    lstm = nn.LSTM(7, 5, layers, batch_first=True, bidirectional=bidirectional).double()
    x = torch.randn(4, 6, 7, dtype=torch.float64, requires_grad=not bidirectional)   # CPC's input needs a gradient
    assert written_out(lstm, x)
    results = []
    for fn in (lambda: lstm(x)[0], lambda: lstm_outputs(lstm, x)):
        out = fn()
        inputs = list(lstm.parameters()) + ([x] if x.requires_grad else [])
        results.append((out.detach(), torch.autograd.grad((out * out.detach().sin()).sum(), inputs)))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(got_grads, want_grads))
    with torch.no_grad():
        assert not written_out(lstm, x)            # inference keeps the module's kernel
    assert not written_out(lstm.eval(), x) and not written_out(lstm.train().float(), x.float().bfloat16())


def test_step_compare_refuses_a_wrong_tree_in_one_line(tmp_path):
    import subprocess
    script = Path(__file__).parent.parent / "benchmarks" / "step_compare.py"
    out = subprocess.run([sys.executable, str(script), "--old", str(tmp_path), "--world", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"error: --old/--new {tmp_path} is not a unibench tree (no methods/trainer.py)"]


if __name__ == "__main__":
    if sys.argv[1:2] != ["--record"] or not set(sys.argv[2:]) <= set(CASES):
        sys.exit(f"usage: python tests/methods/test_step_equivalence.py --record [CASE ...]   (re-records the pinned values "
                 f"of those cases, default all; cases: {' '.join(CASES)})")
    torch.set_num_threads(1)
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    pins.update({case: run_steps(case) for case in (sys.argv[2:] or CASES)})
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS}")
