"""Report figures (issue 17): the tables' method names, one entry per pretraining, small multiples that stay
legible (≲ 2000 px wide however many pretrainings), size curves with per-seed values and the ablation panel."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark import report_plots as rp
from benchmark.results import CellResult

COUNTS = {"audio": [5, 0, 3, 1], "video": [0, 4, 3, 1], "text": [0, 0, 2, 1]}


def png_size(path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def test_methods_are_named_as_the_tables_print_them():
    label = rp.table_labels()
    assert label("dcid") == "DCID" and label("fccid") == "FCCID" and label("cca") == "CCA (linear, no training)"
    # the ablation grids' rows (pinned to their 16-epoch budget)
    assert label("dcid@epochs=16,quantizer=fsq") == "DCID (FSQ)"                       # a label that says it all
    assert label("fccid@codebook_size=256,epochs=16") == "FCCID, Codebook size: 256"   # "256" needs its header
    assert label("srcid@club_l2=false,epochs=16") == "SRCID, CLUB layer 1 only"        # the header names the method
    assert label("dcid@epochs=8") == "DCID (epochs=8)"                       # no table names it: base + options
    assert label("fccid+toc@criterion=var") == "FCCID+TOC, TOC criterion: variance"


def test_activation_counts_each_pretraining_once():
    results = []
    for seed in (0, 1):
        for method in ("srcid", "srcid@only1=true", "srcid+toc"):   # one pretraining behind all three
            results.append(CellResult(method, "ave", seed, {}, pretrain_key=f"p{seed}",
                                      diagnostics={"code_counts": {m: [v, v] for m, v in COUNTS.items()}}))
        results.append(CellResult("srcid@codebook_size=256", "ave", seed, {}, pretrain_key=f"q{seed}",
                                  diagnostics={"code_counts": COUNTS}))
    found = rp.collect_activation(results)
    assert sorted(found) == ["srcid", "srcid@codebook_size=256"]
    assert sorted(found["srcid"]) == [0, 1] and len(found["srcid"][0]) == 2   # two codebooks (layers)


def test_many_pretrainings_stay_a_readable_grid(tmp_path):
    rng = np.random.default_rng(0)
    specs = [f"{m}@epochs={e}" for m in ("dcid", "fccid", "srcid", "turn", "cmcm", "codis") for e in range(1, 10)]
    activation = {s: {0: [{m: rng.integers(0, 9, 40) for m in COUNTS}]} for s in specs}   # 54 pretrainings
    label = rp.table_labels()
    w, h = png_size(rp.plot_activation_bars(activation, tmp_path / "bars.png", label))
    assert 1000 < w <= 2000 and h <= 2000, (w, h)           # was 0.9 in per bar in one row: > 5000 px
    first = {s: seeds[0] for s, seeds in activation.items()}
    w, h = png_size(rp.plot_activation_simplex(first, tmp_path / "simplex.png", label))
    assert 1000 < w <= 2000, (w, h)                         # was 3.2 in per panel in one row: > 20000 px


def _cell(values):
    from benchmark import stats
    return SimpleNamespace(per_seed=dict(enumerate(values)), summary=stats.summarize(values))


def _size_table(ablation_values):
    rows = [SimpleNamespace(x=x, paper=None, label=str(x)) for x in (256, 400, 1024)]
    rows += [SimpleNamespace(x=None, paper=None, label=f"CLUB {k}") for k in range(3)]
    avg = [_cell([30.0, 31.0, 29.5]), _cell([32.0]), _cell([31.0, 33.0])] + ablation_values
    spec = SimpleNamespace(name="fig", title="Fig. 3 — codebook size and CLUB ablation", rows=rows, columns=[1, 2])
    return SimpleNamespace(spec=spec, avg=avg, index=SimpleNamespace(world="smoke-s0"))


def test_size_curve_draws_the_ablation_only_when_it_has_results(tmp_path):
    none = [SimpleNamespace(per_seed={}, summary=None)] * 3
    w_curve, _ = png_size(rp.plot_size_curve(_size_table(none), tmp_path / "a.png"))
    w_both, _ = png_size(rp.plot_size_curve(_size_table([_cell([20.0, 22.0])] * 3), tmp_path / "b.png"))
    assert w_both > 1.5 * w_curve      # a second panel for the CLUB rows
    with pytest.raises(Exception, match="no row has an 'x'"):
        rp.plot_size_curve(SimpleNamespace(spec=SimpleNamespace(name="t", rows=[], columns=[]), avg=[]),
                           tmp_path / "c.png")
