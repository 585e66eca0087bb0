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
    assert 1000 < w <= 1440 and h <= 2000, (w, h)           # whole at 100 % on a 1440-px screen
    first = {s: seeds[0] for s, seeds in activation.items()}
    pages = rp.simplex_pages(first, label)
    assert [len(p) for p in pages] == [11, 11, 11, 11, 10] and sum(pages, []) == rp._ordered(first, label)
    for k, page in enumerate(pages):
        w, h = png_size(rp.plot_activation_simplex({s: first[s] for s in page}, tmp_path / f"s{k}.png", label))
        assert w <= 1440 and h <= 1440, (w, h)
    with pytest.raises(Exception, match="at most 12"):
        rp.plot_activation_simplex(first, tmp_path / "all.png", label)


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
    assert w_both > 1.3 * w_curve      # a second panel for the CLUB rows
    with pytest.raises(Exception, match="no row has an 'x'"):
        rp.plot_size_curve(SimpleNamespace(spec=SimpleNamespace(name="t", rows=[], columns=[]), avg=[]),
                           tmp_path / "c.png")


def test_labels_carry_the_budget_when_the_rows_drawn_differ_in_it():
    label = rp.table_labels()
    both = rp.with_budgets(["dcid", "dcid@epochs=16,quantizer=fsq"], label)
    assert both("dcid") == f"DCID, {_preset('dcid')} ep" and both("dcid@epochs=16,quantizer=fsq") == "DCID (FSQ), 16 ep"
    assert both.plain("dcid") == "DCID"                                     # a family's panel title
    same = rp.with_budgets(["dcid@epochs=16", "dcid@epochs=16,quantizer=fsq"], label)
    assert same("dcid@epochs=16,quantizer=fsq") == "DCID (FSQ)"             # one budget: said nowhere twice


def _drawn(monkeypatch):
    """The matplotlib Figure a plot function would save."""
    figures = []
    monkeypatch.setattr(rp, "save_png", lambda fig, path: figures.append(fig) or path)
    return figures


def _data_lines(fig):
    """Lines that join data points (more than one x): axhline / axvline references excluded."""
    return [ln for ax in fig.axes for ln in ax.get_lines()
            if ln.get_linestyle() not in ("None", "none", "") and len(set(map(float, ln.get_xdata()))) > 1
            and not (len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1)]


def test_curves_draw_points_and_intervals_never_connecting_lines(monkeypatch, tmp_path):
    from benchmark import stats
    figures = _drawn(monkeypatch)
    table = _size_table([_cell([20.0, 22.0])] * 3)
    table.spec.rows[0].paper = (1, 2, 40.0)
    rp.plot_size_curve(table, tmp_path / "a.png")
    points = {(m, b, d): SimpleNamespace(summary=stats.summarize([b + 1.0, b + 2.0, b + 1.5]))
              for m in ("turn", "codis") for b in (2, 4, 8) for d in ("V->A", "A->A")}
    rp.plot_budget_curves(points, ["turn", "codis"], [2, 4, 8], ["V->A", "A->A"], tmp_path / "b.png", 3.6, 3, 4)
    size, budget = figures
    assert _data_lines(size) == [] and _data_lines(budget) == []
    legend = [t.get_text() for t in budget.axes[-1].get_legend().get_texts()]
    assert "TURN" in legend and "CODIS" in legend and "turn" not in legend   # the tables' names
    bars = [c for ax in budget.axes for c in ax.containers]
    assert bars and all(c.has_yerr for c in bars)                            # mean ± 95 % CI per point


def test_size_curve_names_its_budget(monkeypatch, tmp_path):
    figures = _drawn(monkeypatch)
    rows = [SimpleNamespace(x=x, paper=None, label=str(x), method=m)
            for x, m in ((256, "fccid@codebook_size=256,epochs=16"), (400, "fccid"))]
    spec = SimpleNamespace(name="t", title="T7 — size", rows=rows, columns=[1])
    rp.plot_size_curve(SimpleNamespace(spec=spec, avg=[_cell([30.0, 31.0]), _cell([33.0])],
                                       index=SimpleNamespace(world="w")), tmp_path / "a.png")
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks == ["256\n16 ep", f"400\n{_preset('fccid')} ep"]                              # the rows differ in budget


def test_simplex_pages_follow_the_store(tmp_path):
    """13 tabled pretrainings draw two simplex figures; a store with fewer leaves one (the second page removed)."""
    bases = sorted(rp.tabled_bases())
    assert len(bases) > 12
    results = [CellResult(b, "ave", 0, {}, pretrain_key=f"p{i}", diagnostics={"code_counts": COUNTS})
               for i, b in enumerate(bases[:13])]
    written, _ = rp.make_report_figures(tmp_path, tmp_path / "figs", results=results)
    pages = sorted(p.name for p in (tmp_path / "figs").glob("codebook_activation_simplex*.png"))
    assert pages == ["codebook_activation_simplex.png", "codebook_activation_simplex_2.png"]
    rp.make_report_figures(tmp_path, tmp_path / "figs", results=results[:5])
    assert [p.name for p in (tmp_path / "figs").glob("codebook_activation_simplex*.png")] == [
        "codebook_activation_simplex.png"]


def _preset(method: str) -> int:
    """The epochs `method` trains at its default scale (its card's budget from the budget study)."""
    from benchmark import spec
    return spec.pretrain_settings(spec.parse_method(method))["epochs"]
