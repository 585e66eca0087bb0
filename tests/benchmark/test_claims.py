"""Each claim's decision rule on fabricated stores: one where it holds, one where it fails (never real training)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark import claims, paper_claims, stats
from benchmark.__main__ import main as cli_main
from benchmark.claims import FAILS, HOLDS, INCONCLUSIVE
from benchmark.tables import canonical_method, canonical_task

SEEDS = (0, 1, 2)
CMG_TASKS = {"ave": "acc", "avvp": "f1", "ave_avvp": "f1", "ucf_vgg": "acc"}


def cells(method: str, cross: float, mm: float | None = None, loc: float | None = None, seed_noise: int = 0,
          world: str = "default-s0") -> list[dict]:
    """Result dicts of one method on the 4 CMG tasks × 3 seeds. Cross-modal directions score `cross`
    (localization tasks `loc` if given), m->m directions `mm`; a small seed-specific jitter keeps the
    paired differences from being exactly constant."""
    rng = np.random.default_rng(seed_noise)
    out = []
    for seed in SEEDS:
        jitter = float(rng.normal(0, 0.1))
        for task, metric in CMG_TASKS.items():
            base = loc if (loc is not None and task in ("avvp", "ave_avvp")) else cross
            metrics = {"V->A": {metric: base + jitter}, "A->V": {metric: base + jitter}}
            if mm is not None:
                metrics.update({"V->V": {metric: mm + jitter}, "A->A": {metric: mm - jitter}})
            out.append(result(method, task, seed, metrics, metric, world))
    return out


def result(method, task, seed, metrics, main, world="default-s0"):
    return {"method": canonical_method(method), "task": canonical_task(task), "seed": seed, "world": world,
            "key": f"{method}|{task}|{seed}", "metrics": metrics, "main_metric": main,
            "higher_is_better": {main: True}, "created": "2026-01-01"}


def verdict(number: int, results: list[dict]) -> claims.Claim:
    found, _ = paper_claims.evaluate(results)
    return found[number - 1]


# --------------------------------------------------------------------------- the relations themselves
@pytest.mark.parametrize("rel, a, b, expected", [
    (">", [3, 5, 7], [1, 2, 3], HOLDS),                 # d = 2,3,4: p = 0.035
    (">", [1, 2, 3], [3, 5, 7], FAILS),
    (">", [1, 2, 3], [1.5, 1.0, 3.2], INCONCLUSIVE),
    ("≥", [1.0, 2.1, 3.0], [1.1, 2.0, 3.05], HOLDS),    # d ≈ 0 with tiny spread: equivalent within ±1
    ("≥", [1, 2, 3], [3, 5, 7], FAILS),
    ("≥", [0, 10, 0], [5, 0, 3], INCONCLUSIVE),         # huge spread: neither
    ("≈", [40.0, 41.1, 39.9], [40.1, 41.0, 40.0], HOLDS),
    ("≈", [45.0, 46.2, 44.9], [40.1, 41.0, 40.0], FAILS),
    ("≈", [40, 45, 38], [41, 40, 40], INCONCLUSIVE),
    (">", [2.0], [1.0], INCONCLUSIVE),                  # one seed: no test
])
def test_decision_rules(rel, a, b, expected):
    assert claims.decide(rel, stats.paired_test(a, b))[0] == expected


def test_combination_of_links():
    assert claims.combine([HOLDS, HOLDS]) == HOLDS
    assert claims.combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.combine([INCONCLUSIVE, FAILS, HOLDS]) == FAILS


# --------------------------------------------------------------------------- claim by claim
def test_claim1_ordering():
    ordered = (cells("fccid", 60, seed_noise=1) + cells("dcid", 55, seed_noise=2) + cells("cmcm", 50, seed_noise=3)
               + cells("turn", 40.0, seed_noise=4) + cells("codis", 40.1, seed_noise=5))
    c = verdict(1, ordered)
    assert c.verdict == HOLDS and [l.verdict for l in c.links] == [HOLDS] * 4
    assert c.links[0].test.mean_diff == pytest.approx(5.0, abs=0.5)
    swapped = [r for r in ordered if r["method"] not in ("fccid", "dcid")] + cells("fccid", 55, seed_noise=1) \
        + cells("dcid", 60, seed_noise=2)
    c = verdict(1, swapped)
    assert c.verdict == FAILS and c.links[0].verdict == FAILS and c.deciding() is c.links[0]


def test_claim2_toc_never_hurts():
    base = sum((cells(m, 50 + i, seed_noise=i) for i, m in enumerate(paper_claims.TOC_BASES)), [])
    better = sum((cells(f"{m}+toc", 51 + i, seed_noise=10 + i) for i, m in enumerate(paper_claims.TOC_BASES)), [])
    assert verdict(2, base + better).verdict == HOLDS
    worse = [r for r in better if r["method"] != canonical_method("dcid+toc")] + cells("dcid+toc", 49, seed_noise=13)
    c = verdict(2, base + worse)
    assert c.verdict == FAILS and [l.a for l in c.links if l.verdict == FAILS] == ["dcid+toc"]


def test_claim3_both_criteria_beat_either():
    both = cells("fccid+toc", 56, seed_noise=1)
    assert verdict(3, both + cells("fccid+toc@criterion=sim", 55, seed_noise=2)
                   + cells("fccid+toc@criterion=var", 54, seed_noise=3)).verdict == HOLDS
    c = verdict(3, both + cells("fccid+toc@criterion=sim", 59, seed_noise=2)
                + cells("fccid+toc@criterion=var", 54, seed_noise=3))
    assert c.verdict == FAILS and c.links[0].verdict == FAILS


def test_claim4_precise_quantizers_win_within_modality_only():
    vq_spec, quantizers = paper_claims.QUANTIZER_VQ, paper_claims.QUANTIZERS
    assert canonical_method(vq_spec).startswith("dcid") and set(quantizers) == {"DCID (FSQ)", "DCID (RVQ-2)",
                                                                                 "DCID (RVQ-3)", "DCID (RVQ-4)"}
    vq = cells(vq_spec, 60, mm=70, seed_noise=1)
    others = sum((cells(spec, 57, mm=80, seed_noise=5 + i) for i, spec in enumerate(quantizers.values())), [])
    c = verdict(4, vq + others)
    assert c.verdict == HOLDS and len(c.links) == 8
    fsq = quantizers["DCID (FSQ)"]
    flipped = [r for r in others if r["method"] != canonical_method(fsq)] + cells(fsq, 65, mm=80, seed_noise=5)
    c = verdict(4, vq + flipped)
    assert c.verdict == FAILS
    assert [(l.a, l.b) for l in c.links if l.verdict == FAILS] == [(vq_spec, fsq)]


def test_claim5_layer_two_helps_localization_more():
    only1 = cells("srcid@only1=true", 55, loc=60, seed_noise=1)
    assert verdict(5, only1 + cells("srcid", 54.5, loc=65, seed_noise=2)).verdict == HOLDS
    c = verdict(5, only1 + cells("srcid", 58, loc=57, seed_noise=2))
    assert c.verdict == FAILS and [l.verdict for l in c.links] == [FAILS, FAILS]


def test_claim6_codebook_400_is_best():
    base, specs = paper_claims.BEST_SIZE_SPEC, paper_claims.SIZES
    assert sorted(specs) == [256, 300, 512, 800, 1024]
    sizes = {256: 52, 300: 54.5, 512: 53, 800: 53.5, 1024: 52.5}
    rest = sum((cells(specs[n], v, seed_noise=n) for n, v in sizes.items()), [])
    assert verdict(6, cells(base, 55, seed_noise=1) + rest).verdict == HOLDS
    c = verdict(6, cells(base, 50, seed_noise=1) + rest)
    assert c.verdict == FAILS and {l.b for l in c.links if l.verdict == FAILS} >= {specs[300]}


def recon(values: dict[str, tuple[float, float]]) -> list[dict]:
    out = []
    for seed in SEEDS:
        j = 0.001 * seed
        metrics = {ratio: {"mse_random": rnd + j, "mse_toc": toc + 2 * j, "count": 90.0}
                   for ratio, (rnd, toc) in values.items()}
        out.append(result("vqvae", "toc_recon", seed, metrics, "mse_toc"))
    return out


def test_claim7_toc_masks_beat_random_masks():
    good = recon({"mask87.5": (0.06, 0.02), "mask50": (0.02, 0.009), "mask25": (0.0075, 0.004)})
    c = verdict(7, good)
    assert c.verdict == HOLDS and len(c.links) == 3
    bad = recon({"mask87.5": (0.06, 0.02), "mask25": (0.004, 0.0075)})
    c = verdict(7, bad)
    assert c.verdict == FAILS and [l.quantity for l in c.links if l.verdict == FAILS] == ["MSE at mask25"]


def test_missing_data_is_inconclusive_and_named():
    found, index = paper_claims.evaluate(cells("fccid", 60) + cells("dcid", 55))
    assert [c.verdict for c in found] == [INCONCLUSIVE] * 7
    c1 = found[0]
    assert c1.links[0].verdict == HOLDS            # what is there is still tested
    assert {(m["method"], m["seed"]) for m in c1.missing} >= {("cmcm", 0), ("turn", 2), ("codis", 1)}
    assert found[6].note and found[6].missing[0]["reason"] == "no result"


def test_claims_cli_writes_markdown_and_json(tmp_path, capsys):
    store = tmp_path / "store"
    for r in cells("fccid", 60, seed_noise=1) + cells("dcid", 55, seed_noise=2):
        d = store / "cells" / r["task"] / r["method"] / f"k{r['seed']}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r))
    assert cli_main(["claims", "--results", str(store)]) == 0
    out = capsys.readouterr().out
    assert "FCCID > DCID" in out and "inconclusive" in out
    md = (store / "tables" / "claims.md").read_text()
    assert "holds if mean(a−b) > 0 and p < 0.05" in md and "fccid > dcid" in md
    data = json.loads((store / "tables" / "claims.json").read_text())
    assert [c["verdict"] for c in data["claims"]] == [INCONCLUSIVE] * 7
    assert data["claims"][0]["links"][0]["verdict"] == HOLDS and data["world"] == "default-s0"


def test_claims_4_and_6_name_rows_of_their_grids():
    """The specs the claims compare are the rows the tables show (budget included): a grid edit that changes a
    row without the claim fails here."""
    from benchmark.tables import load_table
    t1 = {canonical_method(r.method): r.label for r in load_table("srcid_t1").rows if not r.mm}
    assert {canonical_method(paper_claims.QUANTIZER_VQ): "DCID (VQ)"} | {
        canonical_method(s): label for label, s in paper_claims.QUANTIZERS.items()} == t1
    t7 = {int(r.x): canonical_method(r.method) for r in load_table("t7").rows if r.x is not None}
    assert t7 == {paper_claims.BEST_SIZE: canonical_method(paper_claims.BEST_SIZE_SPEC)} | {
        n: canonical_method(s) for n, s in paper_claims.SIZES.items()}


def test_claims_do_not_depend_on_grid_row_order(monkeypatch):
    """Reordering the rows of SRCID Table I's and Table 7's grids leaves every verdict and comparison unchanged."""
    import dataclasses

    import benchmark.tables as tables
    stored = cells(paper_claims.QUANTIZER_VQ, 60, mm=70, seed_noise=1) + sum(
        (cells(s, 57 + i, mm=80, seed_noise=5 + i) for i, s in enumerate(paper_claims.QUANTIZERS.values())), []) \
        + cells(paper_claims.BEST_SIZE_SPEC, 55, seed_noise=1) + sum(
        (cells(s, 52 + i, seed_noise=n) for i, (n, s) in enumerate(paper_claims.SIZES.items())), [])

    def outcome():
        found, index = paper_claims.evaluate(stored)
        return claims.to_json(found, index)

    before = outcome()
    load = tables.load_table
    monkeypatch.setattr(tables, "load_table", lambda name, *a, **k: dataclasses.replace(
        load(name, *a, **k), rows=list(reversed(load(name, *a, **k).rows))))
    assert tables.load_table("srcid_t1").rows[0].method != load("srcid_t1").rows[0].method   # the rows did move
    assert outcome() == before
