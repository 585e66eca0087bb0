"""The instrument (issue 14): a fixed world, budgets from one chained run, convergence, reference methods, CMCM
sharpness."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import budget, pretraining, runner
from benchmark import spec as specs
from benchmark.contracts import RunContext, UserError
from benchmark.store import Store
from benchmark.world import WorldChoice
from methods.alignment import cmcm_scale
from methods.baselines import cca
from methods.base import ArrayCorpus
from methods.trainer import training_summary
from tasks.data.synth import FEATURE_STEP, to_grid

ROOT = Path(__file__).resolve().parent.parent.parent


# --------------------------------------------------------------------------- a world fixed across CPUs
def test_features_sit_on_the_storage_grid():
    x = np.array([0.1, -1.23456789, 3.0 + FEATURE_STEP * 0.49, 2.0 ** -20])
    g = to_grid(x)
    assert g.dtype == np.float32
    assert np.all(np.asarray(g, np.float64) / FEATURE_STEP == np.rint(np.asarray(g, np.float64) / FEATURE_STEP))
    assert g[2] == np.float32(3.0) and g[3] == 0.0


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.h5")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _synth(out: Path, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "benchmark", "data", "synth", "--profile", "smoke", "--seed", "0",
                    "--out", str(out), "-q"], cwd=ROOT, env={**os.environ, **env}, check=True,
                   capture_output=True)


def test_world_is_bit_identical_under_another_blas_kernel(tmp_path):
    """OpenBLAS picks its kernels by CPU; forcing another core type (SSE-era Prescott vs the native one) must not
    change one byte of the world (the sensors run in float64 and round onto a coarse grid)."""
    _synth(tmp_path / "native", {})
    _synth(tmp_path / "prescott", {"OPENBLAS_CORETYPE": "Prescott"})
    assert _digest(tmp_path / "native") == _digest(tmp_path / "prescott")




def test_smoke_world_fingerprint_is_pinned(tmp_path):
    from tasks.data import open_world
    _synth(tmp_path / "w", {})
    fp = open_world(tmp_path / "w").open("pretrain").fingerprint
    expected = (ROOT / "tasks" / "data" / "WORLD.md").read_text()
    assert f"`smoke-s0` pretrain.h5 `{fp}`" in expected, fp


def _published_default_fingerprints() -> dict[str, str]:
    """The per-file fingerprints of `default-s0` as WORLD.md publishes them (its fingerprint table row)."""
    return dict(re.findall(r"(\w+) `([0-9a-f]{16})`", _default_row()[2]))


def _published_default_world() -> str:
    return _default_row()[3].strip().strip("`")


def _default_row() -> list[str]:
    row = next(line for line in (ROOT / "tasks" / "data" / "WORLD.md").read_text().splitlines()
               if line.startswith("| `default-s0` |"))
    return row.split("|")


def test_default_world_fingerprints_are_the_published_ones(tmp_path):
    """The default world users compare numbers on: its audio, video and text sensors (vgg, ucf, retrieval_vt;
    files are independent of which others are generated) reproduce the fingerprints WORLD.md and the README
    publish, on this CPU, and (video) under another OpenBLAS kernel."""
    from tasks.data import open_world
    published = _published_default_fingerprints()
    assert len(published) == 8, published
    for label, env, names in (("native", {}, ["vgg", "ucf", "retrieval_vt"]),
                              ("prescott", {"OPENBLAS_CORETYPE": "Prescott"}, ["ucf"])):
        out = tmp_path / label
        subprocess.run([sys.executable, "-m", "benchmark", "data", "synth", "--profile", "default", "--seed", "0",
                        "--out", str(out), "--only", ",".join(names), "-q"], cwd=ROOT, env={**os.environ, **env},
                       check=True, capture_output=True)
        world = open_world(out)
        got = {n: world.open(n).fingerprint for n in names}
        assert got == {n: published[n] for n in names}, (label, got)
    assert f"**`{_published_default_world()}`**" in (ROOT / "README.md").read_text()   # one number, both places


# --------------------------------------------------------------------------- budgets and convergence
def test_budget_chain_equals_fresh_runs(tmp_path):
    """Training to 2 epochs through the chain (1, then resume to 2) gives bit for bit the fresh 2-epoch model."""
    world = WorldChoice(profile="smoke", cache_root=str(tmp_path / "data")).open()
    ctx = runner.make_context("cpu")
    budget.run_chain("cmcm", [1, 2], 0, world, Store(tmp_path / "chain"), ctx)
    fresh = runner.Cell(specs.parse_method("cmcm@epochs=2"), None, 0)
    pretraining._MEMORY.clear()
    a, _ = pretraining.get_pretrained(fresh, world, Store(tmp_path / "fresh"), ctx)
    pretraining._MEMORY.clear()
    b = specs.parse_method(budget.with_epochs("cmcm", 2))
    b, _ = pretraining.get_pretrained(runner.Cell(b, None, 0), world, Store(tmp_path / "chain"), ctx)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history == b.history or [h["total"] for h in a.history] == [h["total"] for h in b.history]


def test_budget_chains_train_each_budget_alone_when_the_schedule_follows_the_budget():
    """SRCID's warm start is a share of the budget, so its 2-epoch run is no prefix of its 4-epoch run: the study
    gives each budget its own checkpoints; a fixed warm start (or DCID) shares one chain."""
    dep = lambda m: budget._schedule_depends_on_epochs(specs.parse_method(m))
    assert dep("srcid@epochs=4") and not dep("srcid@epochs=4,warm_epoch=1") and not dep("dcid@epochs=4")
    assert not dep("cca")


def test_with_epochs_places_the_budget_on_the_base_method():
    assert budget.with_epochs("dcid", 8) == "dcid@epochs=8"
    assert budget.with_epochs("dcid@quantizer=rvq", 8) == "dcid@quantizer=rvq,epochs=8"
    with pytest.raises(UserError):
        budget.with_epochs("dcid@epochs=3", 8)
    with pytest.raises(UserError):
        budget.with_epochs("cca", 8)


def _points(values):
    """{(method, epochs): [score per seed]} -> points for direction V->A and A->A (same numbers)."""
    out = {}
    for (m, e), v in values.items():
        for d in ("V->A", "A->A"):
            out[(m, e, d)] = budget.Point(m, e, d, dict(enumerate(v)))
    return out


def test_convergence_verdict_and_chosen_budget():
    pts = _points({("a", 2): [10, 11, 12], ("a", 4): [20, 21, 22], ("a", 8): [20.5, 21.5, 22.5],
                   ("b", 2): [5, 5, 5], ("b", 4): [5.5, 5.2, 5.1], ("b", 8): [5.4, 5.0, 5.6]})
    assert budget.converged(pts, "a", 2, "V->A") is False
    assert budget.converged(pts, "a", 4, "V->A") is True       # within 1 point of 8
    assert budget.converged(pts, "a", 8, "V->A") is None       # 16 not probed
    assert budget.choose_budget(pts, ["a", "b"], [2, 4, 8]) == 4
    assert budget.choose_budget(pts, ["a"], [2]) is None


def test_settled_means_converged_at_some_probed_budget_up_to_this_one():
    """The head study's rule: settled at b once converged at any probed s <= b (a converged score agrees with every
    larger probed one), never before, and not on a budget whose double was never probed."""
    pts = _points({("a", 2): [10, 11, 12], ("a", 4): [20, 21, 22], ("a", 8): [20.5, 21.5, 22.5],
                   ("a", 16): [20.8, 21.8, 22.8]})
    assert [budget.settled(pts, "a", b, "V->A") for b in (2, 4, 8, 16)] == [False, True, True, True]
    assert budget.settled(pts, "a", 3, "V->A") is False       # the only probed budget <= 3 (2) did not converge
    assert budget.settled(pts, "b", 16, "V->A") is False      # never probed


def test_each_method_gets_its_own_budgets_and_its_own_converged_budget():
    """A fast method probed to 8 and a slow one to 16: each is judged on its own budgets (a fast method's missing
    16 is not a failure), the per-method choice differs, and the common choice is the slowest one's."""
    pts = _points({("fast", 2): [10, 11, 12], ("fast", 4): [20, 21, 22], ("fast", 8): [20.5, 21.5, 22.5],
                   ("slow", 4): [5, 6, 7], ("slow", 8): [30, 31, 32], ("slow", 16): [30.2, 31.1, 32.3]})
    plan = {"fast": [2, 4, 8], "slow": [4, 8, 16]}
    assert budget.budgets_of(["fast", "slow"], plan) == plan
    assert budget.budgets_of(["fast"], [8, 2, 4, 2]) == {"fast": [2, 4, 8]}
    assert budget.choose_budgets(pts, ["fast", "slow"], plan) == {"fast": 4, "slow": 8}
    assert budget.choose_budget(pts, ["fast", "slow"], plan) is None    # no common probed budget converges both
    rows = budget.table_rows(pts, ["fast", "slow"], plan)
    assert [(r["method"], r["epochs"]) for r in rows] == [("fast", 2), ("fast", 4), ("fast", 8), ("slow", 4),
                                                          ("slow", 8), ("slow", 16)]


def _probe(method, seed, va, aa, falling=False, classes=28):
    from benchmark.results import CellResult
    history = [{"total": 10.0 - i} for i in range(8)] if falling else []
    return CellResult(method=method, task="ave", task_name="ave", seed=seed, data_fingerprint="fp", world="w",
                      metrics={"V->A": {"acc": va}, "A->A": {"acc": aa}}, main_metric="acc",
                      test_sizes={d: {"clips": 1000, "classes": classes} for d in ("V->A", "A->A")},
                      diagnostics={"training": {"loss_history": history}})


def test_tables_mark_a_cell_by_the_budget_study_in_the_store_before_its_loss():
    """A pretraining the study shows converged (its budget agrees with twice it) is not † although its loss still
    falls; one whose probe still moves is †; one flat on the floor has not learned (†); without a study of it
    (no probe at twice its budget) the loss diagnostic decides."""
    from benchmark.tables.build import unconverged
    results = [_probe(f"dcid@epochs={e}", s, 50 + v + s, 60 + v + s) for s in range(3)
               for e, v in ((2, 0.0), (4, 0.4), (8, 0.6))]
    results += [_probe(f"fccid@epochs={e}", s, v + s, v + 5 + s) for s in range(3) for e, v in ((2, 30), (4, 45))]
    results += [_probe(f"cmcm@epochs={e}", s, 3.0 + s / 10, 3.5 - s / 10) for s in range(3) for e in (2, 4)]
    study = budget.study_verdicts(results)
    cell = _probe("dcid@epochs=2+toc", 0, 40, 40, falling=True)        # a refined cell of the converged budget
    assert cell.converged is False and study(cell) is True and not unconverged(cell, study)
    moving = _probe("fccid@epochs=2", 0, 50, 60, falling=False)
    assert study(moving) is False and unconverged(moving, study)
    assert study(_probe("cmcm@epochs=2", 0, 3, 3)) is False                # flat, but at chance: not learned
    alone = _probe("dcid@epochs=8", 0, 50, 60, falling=True)                # no 16-epoch probe: the loss decides
    assert study(alone) is None and unconverged(alone, study)
    other = _probe("dcid@epochs=2", 0, 50, 60, falling=True)
    other.world = "another world"
    assert study(other) is None and unconverged(other, study)
    detection = _probe("dcid@epochs=2", 0, 30, 30, falling=True)      # another task of the same pretraining
    detection.task = detection.task_name = "avvp"
    detection.data_fingerprint = "the avvp file"
    assert study(detection) is True and not unconverged(detection, study)


def test_a_recorded_study_vouches_for_its_pretrainings_in_a_store_without_its_probes(tmp_path):
    """A fresh store holds no probes, yet the committed study (budget.json, each row's pretraining keys) still
    decides †: a converged key is not † although its loss still falls, an unconverged one is, a row without a
    verdict and a key it does not name leave the loss diagnostic to decide, and the store's own probes come
    first."""
    import json
    from benchmark.tables.build import unconverged
    record = tmp_path / "budget.json"
    record.write_text(json.dumps({"rows": [
        {"method": "dcid", "epochs": 2, "converged": True, "pretrain_keys": {"0": "k-fast", "1": "k-fast-1"}},
        {"method": "srcid", "epochs": 64, "converged": False, "pretrain_keys": {"0": "k-moving"}},
        {"method": "srcid", "epochs": 128, "converged": None, "pretrain_keys": {"0": "k-open"}}]}))
    recorded = budget.recorded_verdicts(record)
    assert recorded == {"k-fast": True, "k-fast-1": True, "k-moving": False}
    assert budget.recorded_verdicts(tmp_path / "missing.json") == {}
    (tmp_path / "broken.json").write_text("{")
    assert budget.recorded_verdicts(tmp_path / "broken.json") == {}
    tables = tmp_path / "store" / "tables"            # a later study of one method, written with --name
    tables.mkdir(parents=True)
    (tables / "budget.json").write_text(record.read_text())
    (tables / "budget_srcid.json").write_text(json.dumps({"rows": [
        {"method": "srcid", "epochs": 128, "converged": True, "pretrain_keys": {"0": "k-open"}},
        {"method": "dcid", "epochs": 2, "converged": False, "pretrain_keys": {"1": "k-fast-1"}}]}))
    (tables / "budget.md").write_text("not a record")
    assert budget.recorded_studies(tmp_path / "store") == {"k-fast": True, "k-fast-1": False, "k-moving": False,
                                                           "k-open": True}   # disagreement: not converged wins
    assert budget.recorded_studies(tmp_path / "nothing") == {}

    def cell(method, key, falling):
        c = _probe(method, 0, 50, 60, falling=falling)
        c.pretrain_key = key
        return c
    study = budget.study_verdicts([], recorded=recorded)
    fast = cell("dcid@epochs=2", "k-fast", falling=True)
    assert fast.converged is False and study(fast) is True and not unconverged(fast, study)
    moving = cell("srcid@epochs=64", "k-moving", falling=False)
    assert moving.converged is not False and study(moving) is False and unconverged(moving, study)
    for key in ("k-open", "k-unknown"):
        loose = cell("srcid@epochs=128", key, falling=True)
        assert study(loose) is None and unconverged(loose, study)
    # the store's probes of the same family override the record: here they show dcid@2 still moving
    probes = [_probe(f"dcid@epochs={e}", s, 50 + v + s, 60 + v + s) for s in range(3) for e, v in ((2, 0), (4, 9))]
    assert budget.study_verdicts(probes, recorded=recorded)(fast) is False


def test_each_card_budget_is_judged_by_the_studies_that_probed_it(tmp_path, monkeypatch):
    """`budget.proofs`: a method's card budget is proven by whichever committed study probed twice it; where
    studies disagree not converged wins; a budget no study judged, or judged on other pretrainings, is unproven."""
    import json
    monkeypatch.setattr(budget, "preset_epochs", {"dcid": 64, "srcid": 128, "cmcm": 32}.get)
    tables = tmp_path / "tables"
    tables.mkdir()
    row = lambda m, e, ok, v, key: {"method": m, "epochs": e, "converged": ok, "V->A mean": v, "A->A mean": v + 1,
                                    "pretrain_keys": {"0": key}}
    (tables / "budget.json").write_text(json.dumps({"rows": [
        row("dcid", 64, True, 93.0, "d64"), row("dcid", 128, None, 95.0, "d128"),
        row("srcid", 64, False, 94.0, "s64"), row("srcid", 128, None, 96.2, "s128"),
        row("cmcm", 16, True, 50.0, "c16")]}))
    (tables / "budget_srcid.json").write_text(json.dumps({"rows": [
        row("srcid", 128, True, 96.2, "s128"), row("srcid", 256, None, 96.9, "s256")]}))
    got = {r["method"]: r for r in budget.proofs(tmp_path)}
    assert (got["dcid"]["converged"], got["dcid"]["study"], got["dcid"]["V->A at"], got["dcid"]["V->A at 2x"]) == \
        (True, "budget", 93.0, 95.0)
    assert (got["srcid"]["converged"], got["srcid"]["study"], got["srcid"]["A->A at 2x"]) == (True, "budget_srcid", 97.9)
    assert got["cmcm"]["converged"] is None and got["cmcm"]["study"] is None     # its card moved off 16
    assert budget.proofs(tmp_path, keys={"dcid": {"other"}})[0]["converged"] is None
    (tables / "budget_later.json").write_text(json.dumps({"rows": [row("srcid", 128, False, 95.0, "s128")]}))
    srcid = {r["method"]: r for r in budget.proofs(tmp_path)}["srcid"]
    assert (srcid["converged"], srcid["study"], srcid["V->A at"]) == (False, "budget_later, budget_srcid", 95.0)


def test_every_studied_card_trains_a_budget_its_committed_study_proves():
    """The committed studies against today's cards: a preset changed without a study proving it fails here."""
    import json
    studied = json.loads((ROOT / "results" / "tables" / "budget.json").read_text())["presets"]
    unproven = {r["method"]: (r["epochs"], r["converged"]) for r in budget.proofs(ROOT / "results", list(studied))
                if r["converged"] is not True}
    assert not unproven


def test_the_summary_after_a_run_marks_dagger_as_tables_do(tmp_path):
    """`run`/`grid` print a per-task summary: a cell whose loss still falls but whose pretraining the recorded study
    proves converged has no †, one the study finds moving has †, whatever its loss says."""
    import json
    from benchmark.commands._common import unconverged_rule
    from benchmark.ui import grid_tables, console
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables/budget.json").write_text(json.dumps({"rows": [
        {"method": "turn", "epochs": 32, "converged": True, "pretrain_keys": {"0": "k-turn"}},
        {"method": "srcid", "epochs": 64, "converged": False, "pretrain_keys": {"0": "k-srcid"}}]}))
    turn = _probe("turn@epochs=32", 0, 90, 95, falling=True)
    srcid = _probe("srcid@epochs=64", 0, 80, 85, falling=False)
    turn.pretrain_key, srcid.pretrain_key = "k-turn", "k-srcid"

    def shown(rule):
        with console.capture() as cap:
            for table in grid_tables([turn, srcid], rule):
                console.print(table)
        return cap.get()
    text = shown(unconverged_rule([turn, srcid], tmp_path))
    assert "srcid@epochs=64†" in text and "turn@epochs=32†" not in text
    text = shown(None)        # the loss diagnostic alone says the reverse
    assert "turn@epochs=32†" in text and "srcid@epochs=64†" not in text


def test_budget_command_checks_epochs_of_before_any_work(tmp_path, capsys):
    from benchmark.__main__ import main as cli_main
    base = ["budget", "--method", "turn", "dcid", "--epochs", "2", "4", "--results", str(tmp_path), "-q"]
    for bad, message in ((["turn=8,x"], "--epochs-of expects METHOD=E,E,..."),
                         (["cmcm=2,4"], "'cmcm' is not one of --method (turn, dcid)"),
                         (["turn=4"], "--epochs-of turn needs at least two budgets")):
        assert cli_main(base + ["--epochs-of", *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "pretrain").exists()


def test_a_flat_curve_on_the_floor_has_not_learned_so_it_is_not_converged():
    """DCID at lr 1e-2 (codebook collapsed) scored A->A 3.1 at 8 and 16 epochs: flat, but on the floor (chance 3.57)."""
    chance = 100 / 28
    pts = _points({("floor", 8): [3.1, 3.6, 2.6], ("floor", 16): [3.1, 3.4, 2.9]})
    assert budget.converged(pts, "floor", 8, "A->A") is True                    # agreement alone passes it
    assert budget.converged(pts, "floor", 8, "A->A", chance=chance) is False
    assert budget.learned(pts, "floor", 8, chance) is False
    assert budget.choose_budget(pts, ["floor"], [8, 16], chance=chance) is None
    # a method that never transfers (V->A on the floor) but has learned its own modality is converged
    pts = {("m", e, "V->A"): budget.Point("m", e, "V->A", {0: 2.4, 1: 2.8, 2: 2.0}) for e in (8, 16)}
    pts.update({("m", e, "A->A"): budget.Point("m", e, "A->A", {0: 50.0 + e / 16, 1: 51.0, 2: 49.0})
                for e in (8, 16)})
    assert budget.learned(pts, "m", 8, chance) is True
    assert budget.choose_budget(pts, ["m"], [8, 16], chance=chance) == 8
    rows = budget.table_rows(pts, ["m"], [8, 16], chance=chance)
    assert [r["learned"] for r in rows] == [True, True] and rows[0]["converged"] is True


def test_noisy_difference_inside_its_ci_counts_as_converged():
    pts = _points({("a", 4): [10, 20, 30], ("a", 8): [14, 16, 36]})   # diffs 4, -4, 6: mean 2, CI wide
    assert budget.converged(pts, "a", 4, "V->A") is True


def test_training_summary_flags_a_loss_still_falling():
    falling = [{"total": 10.0 - i} for i in range(8)]                # linear: last quarter = 2/7 of the change
    flat = [{"total": 10.0 * 0.2 ** i + 1} for i in range(8)]
    assert training_summary(falling)["converged"] is False
    assert training_summary(flat)["converged"] is True
    assert training_summary(falling[:2])["converged"] is False       # too short to say
    assert len(training_summary(flat)["loss_history"]) == 8


def test_convergence_needs_the_loss_to_have_stopped_falling_not_only_a_small_share():
    """A run whose last quarter holds under 10 % of the whole change but still lowers the loss by 8 % of its value
    (the 16-epoch TURN / FCCID runs the budget study proved unconverged) is not converged; 1 % is."""
    from benchmark.convergence import diagnose
    slow = [100.0] + [20.0 - 0.25 * i for i in range(15)]      # huge early drop, then still 1.25 % per epoch
    out = diagnose(slow)
    assert out["last_quarter_share"] <= 0.10 and out["last_quarter_drop"] > 0.02 and out["converged"] is False
    settled = [100.0] + [20.0 - 0.01 * i for i in range(15)]
    assert diagnose(settled)["converged"] is True
    assert diagnose([1.0, float("nan"), 0.5, 0.4])["converged"] is False


def test_a_cached_cell_is_judged_by_the_current_rule():
    """CellResult.converged recomputes the verdict from the stored loss history (a flag written under an older
    rule does not survive), and falls back to the stored flag when a cell has no history."""
    from benchmark.results import CellResult
    history = [{"total": 100.0}] + [{"total": 20.0 - 0.25 * i} for i in range(15)]
    def cell(diagnostics):
        return CellResult("m", "t", 0, {}, diagnostics=diagnostics)
    assert cell({"training": {"converged": True, "loss_history": history}}).converged is False
    assert cell({"training": {"converged": True}}).converged is True
    assert cell({}).converged is None


# --------------------------------------------------------------------------- reference methods
def test_cca_recovers_a_shared_factor():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((4000, 2))
    x = np.c_[s, rng.standard_normal((4000, 5))] @ rng.standard_normal((7, 7))
    y = np.c_[s, rng.standard_normal((4000, 3))] @ rng.standard_normal((5, 5))
    wx, wy, corr = cca(x - x.mean(0), y - y.mean(0), 3, 1e-6)
    assert corr[0] > 0.99 and corr[1] > 0.99 and corr[2] < 0.1
    u, v = (x - x.mean(0)) @ wx, (y - y.mean(0)) @ wy
    assert abs(np.corrcoef(u[:, 0], v[:, 0])[0, 1]) > 0.99


@pytest.mark.parametrize("name", ["chance", "raw", "cca"])
def test_reference_methods_encode_and_round_trip(name, tmp_path):
    rng = np.random.default_rng(0)
    corpus = ArrayCorpus({"audio": rng.standard_normal((64, 10, 6)), "video": rng.random((64, 10, 3, 3, 9)),
                          "text": rng.standard_normal((64, 10, 4))})
    entry = specs.registry.get("method", name)
    method = entry.load()
    pre = method.pretrain(corpus, entry.defaults(), 0, RunContext())
    pre.save(tmp_path / "m")
    back = method.load(tmp_path / "m", entry.defaults(), RunContext())
    a, v = corpus.arrays["audio"][:5], corpus.arrays["video"][:5]
    assert torch.equal(pre.encode("audio", a), back.encode("audio", a))
    ea, ev = pre.encode("audio", a), pre.encode("video", v)
    assert ea.shape[:2] == (5, 10) and ea.shape[-1] == ev.shape[-1]
    if name == "chance":
        assert not ea.any() and not ev.any()
    if name == "raw":
        assert torch.allclose(ea[..., :6], torch.as_tensor(a, dtype=torch.float32))
        assert torch.allclose(ev[..., :9], torch.as_tensor(v.mean((2, 3)), dtype=torch.float32))
    with pytest.raises(UserError):
        pre.encode("text", corpus.arrays["text"][:2])


# --------------------------------------------------------------------------- CMCM sharpness
def test_cmcm_scale_restores_the_released_sharpness_at_any_width():
    assert cmcm_scale({"code_dim": 256}) == pytest.approx(1.0)
    assert cmcm_scale({"code_dim": 64}) == pytest.approx(2.0)
    assert cmcm_scale({"code_dim": 64, "cmcm_scale": 1.0}) == 1.0
    method = specs.registry.get("method", "cmcm").load()
    model = method.build_model({"audio": (10, 8), "video": (10, 8)},
                               method.settings({**specs.registry.get("method", "cmcm").defaults()}))
    z = torch.randn(2, 10, 64)
    assert torch.allclose(model.quantizer.cmcm_logits(z), 2.0 * model.quantizer.distance_logits(z))


def test_a_plateau_at_chance_before_learning_is_not_convergence():
    pts = _points({("a", 2): [4, 4, 4], ("a", 4): [4.2, 4.1, 4.3], ("a", 8): [30, 31, 29]})
    assert budget.converged(pts, "a", 2, "V->A") is False        # agrees with 4 but not with 8
    assert budget.converged(pts, "a", 4, "V->A") is False


def test_a_world_whose_files_changed_is_regenerated(tmp_path, capsys):
    """Files that no longer match the fingerprints recorded at generation are regenerated with one warning
    (before: the changed file got a new fingerprint and cells were silently computed on it)."""
    import shutil

    from tasks.data.world import ensure_world
    root = ensure_world("smoke", 0, tmp_path)
    original = (root / "ave.h5").read_bytes()
    other = ensure_world("smoke", 1, tmp_path)
    shutil.copyfile(other / "ave.h5", root / "ave.h5")          # a valid file, but not this world's
    again = ensure_world("smoke", 0, tmp_path)
    assert again == root and (root / "ave.h5").read_bytes() == original
    assert "changed since generation; regenerating" in capsys.readouterr().err
    assert ensure_world("smoke", 0, tmp_path) == root               # and now it is quiet


def test_list_values_in_specs_parse_and_round_trip():
    task = specs.parse_task("ave@lr_milestones=[5,10],epochs=12")
    assert task.component.cfg["lr_milestones"] == [5, 10] and task.component.cfg["epochs"] == 12
    again = specs.parse_task(task.canonical())
    assert again.canonical() == task.canonical() and again.component.cfg == task.component.cfg
    with pytest.raises(UserError):
        specs.parse_task("ave@lr_milestones=[5,10")


def test_every_head_task_trains_the_schedule_its_committed_study_proves():
    """The head-budget study (`tests/benchmarks/head_budget.py`) against today's task cards: a head schedule changed
    without a study proving every row's val score has stopped moving fails here."""
    import json
    record = json.loads((ROOT / "results" / "tables" / "head_budget.json").read_text())
    assert record["tasks"], "the committed head-budget study is empty"
    for task, study in record["tasks"].items():
        assert study["scale"] is not None, f"{task}: no probed head schedule converges every row"
        moving = {row for row, ok in study["settled"].items() if not ok}
        assert study["settled"] and moving <= set(study["exempt"]), f"{task}: {moving} still move at its budget"
        cfg = specs.parse_task(task).resolved()["cfg"]
        card = {"epochs": cfg["epochs"], "lr_milestones": list(cfg["lr_milestones"]), "patience": cfg["patience"]}
        assert card == study["schedule"], f"{task}: card {card} is not the proven schedule {study['schedule']}"
