"""Tables, grids and report plots on small synthetic stores (fake result.json files; never any training)."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from benchmark import tables
from benchmark.__main__ import main as cli_main
from benchmark.gridspec import find_grid, load_grid

SEEDS = (0, 1, 2)
T1_TASKS = ("ave", "avvp", "ave_avvp", "ucf_vgg")
MAIN = {"ave": "acc", "avvp": "f1", "ave_avvp": "f1", "ucf_vgg": "acc"}


def put(root: Path, method: str, task: str, seed: int, metrics: dict, main: str = "acc", world: str = "default-s0",
        hib: dict | None = None, created: str = "2026-01-01T00:00:00+00:00", key: str | None = None,
        diagnostics: dict | None = None, task_version: int = 1, data: str | None = None) -> str:
    """Write one fake cell the way the runner lays it out (result.json + config.json + env.json)."""
    method, task = tables.canonical_method(method), tables.canonical_task(task)
    key = key or hashlib.sha256(f"{method}|{task}|{seed}|{world}".encode()).hexdigest()[:16]
    d = root / "cells" / task / method / key
    d.mkdir(parents=True, exist_ok=True)
    names = {m for v in metrics.values() for m in v}
    result = {"schema_version": 1, "key": key, "method": method, "task": task, "task_name": task.split("@")[0],
              "task_version": task_version, "seed": seed, "world": world, "metrics": metrics, "main_metric": main,
              "higher_is_better": hib or {n: True for n in names}, "created": created,
              "diagnostics": diagnostics or {}, "data_fingerprint": data}
    (d / "config.json").write_text(json.dumps({"task": {"cfg": {"protocol": "default"}}}))
    (d / "env.json").write_text(json.dumps({"git_sha": "abc123", "git_dirty": False}))
    (d / "result.json").write_text(json.dumps(result))
    return key


T1_ROWS = [r.spec for r in tables.load_table("t1").rows]


def t1_value(method: str, task: str, direction: str, seed: int) -> float:
    """Distinct, hand-traceable numbers: 52 for the first row, 2 less per later row, + task index, + 0.5 for
    A->V, + seed jitter (0.1, 0.4, -0.2)."""
    base = 52.0 - 2.0 * T1_ROWS.index(method)
    return round(base + T1_TASKS.index(task) + (0.5 if direction == "A->V" else 0.0) + (0.1, 0.4, -0.2)[seed], 6)


@pytest.fixture(scope="module")
def t1_store(tmp_path_factory):
    """Every t1 cell for seeds 0-2 except FCCID × AVVP × seed 2 (the missing cell the table must list)."""
    root = tmp_path_factory.mktemp("store")
    for spec in T1_ROWS:
        for task in T1_TASKS:
            for seed in SEEDS:
                if spec == "fccid" and task == "avvp" and seed == 2:
                    continue
                metrics = {d: {MAIN[task]: t1_value(spec, task, d, seed), "other": 1.0}
                           for d in ("V->A", "A->V", "V->V", "A->A")}
                put(root, spec, task, seed, metrics, main=MAIN[task])
    return root


def run_table(store: Path, out: Path, *args) -> int:
    return cli_main(["table", *args, "--results", str(store), "--out", str(out)])


# --------------------------------------------------------------------------- LaTeX checks without LaTeX
def balanced(tex: str) -> None:
    """Environments nest properly and braces balance (escaped \\{ \\} ignored)."""
    stack = []
    for m in re.finditer(r"\\(begin|end)\{([^}]*)\}", tex):
        if m.group(1) == "begin":
            stack.append(m.group(2))
        else:
            assert stack and stack.pop() == m.group(2), f"unbalanced \\end{{{m.group(2)}}}"
    assert not stack, f"unclosed environments {stack}"
    depth = 0
    body = re.sub(r"\\[{}]", "", "\n".join(line for line in tex.splitlines() if not line.startswith("%")))
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0


def latex_rows(tex: str) -> dict[str, list[str]]:
    """Body rows of the tabular: label -> cell strings."""
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    rows = {}
    for line in body.replace("\\midrule", "").split("\\\\"):
        cells = [c.strip() for c in re.split(r"(?<!\\)&", line)]
        if len(cells) > 1:
            rows[cells[0]] = cells[1:]
    return rows


def first_number(cell: str) -> float | None:
    m = re.search(r"-?\d+\.\d+", cell.split("\\scriptsize")[0])
    return float(m.group(0)) if m else None


def test_t1_latex_compiles_structurally_and_equals_csv_means(t1_store, tmp_path):
    assert run_table(t1_store, tmp_path, "t1", "--format", "latex,csv") == 0
    tex = (tmp_path / "t1.tex").read_text()
    balanced(tex)
    for piece in ("\\begin{table}", "\\begin{tabular}", "\\toprule", "\\midrule", "\\bottomrule", "\\end{tabular}",
                  "\\caption{", "\\end{table}"):
        assert piece in tex
    assert tex.index("\\end{tabular}") < tex.index("\\caption{") < tex.index("\\end{table}")
    with open(tmp_path / "t1.csv") as fh:
        long = list(csv.DictReader(fh))
    assert set(long[0]) == {"method", "task", "direction", "metric", "seed", "value", "key", "converged",
                            "below_floor"}
    spec = tables.load_table("t1")
    rows = latex_rows(tex)
    checked = 0
    for row in spec.rows:
        cells = rows[tables.latex_escape(row.label)]
        per_seed_cols = []
        for col, cell in zip(spec.columns, cells):
            direction = tables.mm_direction(col.directions[0]) if row.mm else col.directions[0]
            vals = {int(r["seed"]): float(r["value"]) for r in long if r["method"] == row.method
                    and r["task"] == col.task and r["direction"] == direction and r["metric"] == MAIN[col.task]}
            assert first_number(cell) == pytest.approx(round(sum(vals.values()) / len(vals), 2), abs=1e-9)
            per_seed_cols.append(vals)
            checked += 1
        complete = [s for s in SEEDS if all(s in v for v in per_seed_cols)]
        avg = sum(sum(v[s] for v in per_seed_cols) / len(per_seed_cols) for s in complete) / len(complete)
        assert first_number(cells[-1]) == pytest.approx(round(avg, 2), abs=1e-9)
    assert checked == len(spec.rows) * len(spec.columns)


def test_cell_shows_mean_and_t_interval_and_paper_number(t1_store, tmp_path):
    bt = tables.build(tables.load_table("t1"), tables_store_results(t1_store))
    texts = tables.cell_texts(bt)
    # CODIS (row 0), AVE V->A: 52 + (0.1, 0.4, -0.2) -> mean 52.1, s = 0.3, half = 4.303 * 0.3 / sqrt 3 = 0.745
    assert t1_value("codis", "ave", "V->A", 0) == pytest.approx(52.1)
    assert (texts[0][0].mean, texts[0][0].pm, texts[0][0].paper) == ("52.10", "0.75", "36.8")
    md = tables.to_markdown(bt)
    assert "\n| CODIS | **52.10** ± 0.75 (36.8) | **52.60** ± 0.75 (39.7) |" in md   # best: bold
    assert "(39.90)" in md and "(55.0)" in md   # paper precision kept per column; Avg. beside ours


def tables_store_results(root: Path):
    from benchmark.store import Store
    return Store(root).results()


def test_missing_cell_is_listed_not_dropped(t1_store, tmp_path, capsys):
    assert run_table(t1_store, tmp_path, "t1", "--format", "md") == 0
    err = capsys.readouterr().err
    assert "missing: fccid × avvp × seed 2 (no result)" in err
    meta = json.loads((tmp_path / "t1.meta.json").read_text())
    assert meta["missing"] == [{"method": "fccid", "task": "avvp", "seed": 2, "reason": "no result"}]
    assert "missing: fccid × avvp × seed 2" in (tmp_path / "t1.md").read_text()
    bt = tables.build(tables.load_table("t1"), tables_store_results(t1_store))
    fccid = [r.spec for r in bt.spec.rows].index("fccid")
    assert bt.cells[fccid][2].summary.n == 2 and bt.cells[fccid][0].summary.n == 3
    assert sorted(bt.avg[fccid].per_seed) == [0, 1]          # Avg only over seeds with every column
    assert tables.cell_texts(bt)[fccid][2].n_mark == "n=2"
    assert run_table(t1_store, tmp_path, "t1", "--format", "csv", "--strict") == 1


def test_meta_names_every_contributing_cell_and_the_sha(t1_store, tmp_path):
    run_table(t1_store, tmp_path, "t1", "--format", "csv")
    meta = json.loads((tmp_path / "t1.meta.json").read_text())
    on_disk = {p.parent.name for p in t1_store.glob("cells/*/*/*/result.json")}
    assert {c["key"] for c in meta["cells"]} == on_disk
    assert meta["git_sha"] == "abc123" and meta["world"] == "default-s0" and meta["seeds"] == [0, 1, 2]
    assert "protocol: default" in meta["caption"].lower() and "world: default-s0" in meta["caption"]


def test_unchanged_sidecar_keeps_its_bytes_and_a_changed_one_is_rewritten(t1_store, tmp_path):
    run_table(t1_store, tmp_path, "t1", "--format", "csv")
    path = tmp_path / "t1.meta.json"
    data = json.loads(path.read_text())
    data["created"] = "2000-01-01T00:00:00+00:00"                 # as if written long ago
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    run_table(t1_store, tmp_path, "t1", "--format", "csv")
    assert path.read_bytes() == before                            # nothing but the time would change
    data["caption"] = "stale"
    path.write_text(json.dumps(data))
    run_table(t1_store, tmp_path, "t1", "--format", "csv")
    assert json.loads(path.read_text())["caption"] != "stale"


def test_best_per_column_respects_higher_is_better(tmp_path):
    grid = {"name": "tiny", "title": "lower is better", "seeds": [0, 1], "methods": ["a", "b"], "tasks": ["t"],
            "table": {"columns": [{"task": "t", "direction": "X"}], "rows": [{"method": "a"}, {"method": "b"}]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    store = tmp_path / "store"
    for seed in (0, 1):
        put(store, "a", "t", seed, {"X": {"mse": 1.0 + seed}}, main="mse", hib={"mse": False})
        put(store, "b", "t", seed, {"X": {"mse": 3.0 + seed}}, main="mse", hib={"mse": False})
    bt = tables.build(tables.parse_table(load_grid(path), path), tables_store_results(store))
    assert bt.column_best() == [{0}, {0}]                     # a has the lower MSE, in the column and in Avg
    tex = tables.to_latex(bt)
    assert "\\textbf{1.50}" in tex and "\\textbf{3.50}" not in tex
    # the library builds tables of any names; the command refuses names the registry does not know (issue 25)
    assert run_table(store, tmp_path / "out", str(path), "--format", "terminal") == 2


def test_single_seed_shows_the_mean_alone(tmp_path):
    store = tmp_path / "store"
    put(store, "dcid", "ave", 0, {"V->A": {"acc": 50.0}, "A->V": {"acc": 40.0}})
    grid = {"name": "one", "seeds": [0], "methods": ["dcid"], "tasks": ["ave"],
            "table": {"columns": [{"task": "ave", "direction": "V->A"}, {"task": "ave", "direction": "A->V"}],
                      "rows": [{"method": "dcid"}]}}
    bt = tables.build(tables.parse_table(grid), tables_store_results(store))
    texts = tables.cell_texts(bt)[0]
    assert [(t.mean, t.pm) for t in texts] == [("50.00", ""), ("40.00", ""), ("45.00", "")]
    latex, md = tables.to_latex(bt), tables.to_markdown(bt)
    assert "& 50.00 & 40.00 & 45.00 \\\\" in latex and "| 50.00 | 40.00 | 45.00 |" in md
    assert "n/a" not in latex + md and "the mean alone when n=1" in tables.caption(bt)


def test_mm_rows_excluded_columns_and_direction_means(tmp_path):
    store = tmp_path / "store"
    for seed in (0, 1):
        put(store, "dcid", "ave", seed, {"V->A": {"acc": 50.0}, "A->V": {"acc": 52.0},
                                         "V->V": {"acc": 70.0 + seed}, "A->A": {"acc": 80.0}})
        put(store, "dcid", "retrieval", seed, {"V->T": {"R@1": 2.0}, "T->V": {"R@1": 4.0 + 2 * seed}}, main="R@1")
    grid = {"name": "mm", "seeds": [0, 1], "methods": ["dcid"], "tasks": ["ave", "retrieval", "ave_avvp"], "table": {
        "columns": [{"task": "ave", "direction": "V->A"}, {"task": "ave", "direction": "A->V"},
                    {"task": "ave_avvp", "direction": "V->A"},
                    {"task": "retrieval", "direction": ["V->T", "T->V"], "metric": "R@1"}],
        "rows": [{"method": "dcid", "label": "cross"},
                 {"method": "dcid", "label": "m->m", "mm": True, "exclude": ["ave_avvp", "retrieval"]}]}}
    bt = tables.build(tables.parse_table(grid), tables_store_results(store))
    cross, mm = tables.cell_texts(bt)
    assert cross[3].mean == "3.50"   # mean over V->T, T->V per seed: (2+4)/2 = 3, (2+6)/2 = 4; then (3+4)/2
    assert [t.mean for t in mm[:2]] == ["70.50", "80.00"] and mm[2].state == mm[3].state == "excluded"
    assert mm[4].mean == "75.25"            # Avg. of the m->m row leaves the excluded columns out
    assert cross[2].state == "missing" and cross[4].state == "missing"
    assert {(m["task"], m["seed"]) for m in bt.missing} == {("ave_avvp", 0), ("ave_avvp", 1)}


def test_missing_metric_in_present_cell_is_listed(tmp_path):
    store = tmp_path / "store"
    put(store, "dcid", "ave", 0, {"V->A": {"acc": 50.0}})
    grid = {"name": "m", "seeds": [0], "methods": ["dcid"], "tasks": ["ave"],
            "table": {"columns": [{"task": "ave", "direction": "A->V"}], "rows": [{"method": "dcid"}]}}
    bt = tables.build(tables.parse_table(grid), tables_store_results(store))
    assert bt.missing[0]["reason"] == "'A->V' has no metric 'acc'"


def test_world_choice_and_duplicates_are_reported(tmp_path):
    store = tmp_path / "store"
    put(store, "dcid", "ave", 0, {"V->A": {"acc": 10.0}}, key="old", created="2026-01-01T00:00:00+00:00")
    put(store, "dcid", "ave", 0, {"V->A": {"acc": 20.0}}, key="new", created="2026-02-01T00:00:00+00:00")
    put(store, "dcid", "ave", 1, {"V->A": {"acc": 30.0}})
    put(store, "dcid", "ave", 0, {"V->A": {"acc": 99.0}}, world="smoke-s0")
    grid = {"name": "w", "seeds": [0, 1], "methods": ["dcid"], "tasks": ["ave"],
            "table": {"avg": False, "columns": [{"task": "ave", "direction": "V->A"}], "rows": [{"method": "dcid"}]}}
    spec = tables.parse_table(grid)
    bt = tables.build(spec, tables_store_results(store))
    assert bt.index.world == "default-s0" and bt.cells[0][0].per_seed == {0: 20.0, 1: 30.0}
    assert any("several worlds" in w for w in bt.warnings)
    assert bt.index.duplicates == [{"method": "dcid", "task": "ave", "seed": 0, "used": "new", "ignored": ["old"]}]
    other = tables.build(spec, tables_store_results(store), world="smoke-s0")
    assert other.cells[0][0].per_seed == {0: 99.0} and other.seeds == [0] and not other.missing  # seeds present
    asked = tables.build(spec, tables_store_results(store), world="smoke-s0", seeds=[0, 1])
    assert asked.missing[0]["seed"] == 1


def test_canonical_matching_uses_the_registry_and_falls_back_to_spelling():
    assert tables.canonical_method("tinymethod@dim=8") == "tinymethod"            # default dropped
    assert tables.canonical_method("tinymethod@dim=4,codes=8") == "tinymethod@codes=8,dim=4"
    assert tables.canonical_method("nosuchmethod@b=2,a=true") == "nosuchmethod@a=true,b=2"
    assert tables.canonical_task("tinytask@fail=false") == "tinytask"


def test_latex_escapes_specials():
    assert tables.latex_escape("a_b 50% & c#") == r"a\_b 50\% \& c\#"
    assert tables.latex_escape("V->A <-> x") == r"V$\rightarrow$A $\leftrightarrow$ x"


def test_every_grid_table_reads_only_its_grid_and_main_covers_the_main_tables():
    main = tables.grid_cells(load_grid(find_grid("main")))
    names = tables.table_names()
    assert {"t1", "t2", "t3", "t5", "t6", "t7", "srcid_t1", "srcid_t2", "srcid_t3", "srcid_fig3"} <= set(names)
    for name in names:
        grid = load_grid(find_grid(name))
        assert tables.table_cells(tables.parse_table(grid, name)) <= tables.grid_cells(grid), name
    for name in ("t1", "t2", "t3", "srcid_t2", "srcid_t3"):
        assert tables.grid_cells(load_grid(find_grid(name))) <= main, name


def test_paper_numbers_length_is_checked(tmp_path):
    grid = {"name": "bad", "methods": ["a"], "tasks": ["t"],
            "table": {"columns": [{"task": "t", "direction": "X"}], "rows": [{"method": "a", "paper": [1, 2, 3]}]}}
    from benchmark.contracts import UserError
    with pytest.raises(UserError, match="one number per column"):
        tables.parse_table(grid, "bad.yaml")


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["table", "t11", "--results", str(tmp_path)]) == 2
    assert "unknown grid 't11'; did you mean 't1'" in capsys.readouterr().err
    assert cli_main(["table", "t1", "--results", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_empty_store_builds_every_table_with_everything_missing(tmp_path, capsys):
    (tmp_path / "cells").mkdir()
    assert cli_main(["table", "all", "--results", str(tmp_path), "--format", "all"]) == 0
    written = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert "t1.tex" in written and "srcid_fig3.meta.json" in written and "main.csv" not in written
    assert not any((tmp_path / "cells").iterdir())   # nothing computed
    tex = (tmp_path / "tables" / "t3.tex").read_text()
    balanced(tex)
    assert "% missing: vqvae × toc_recon × seed 0, 1, 2 (no result)" in tex


# --------------------------------------------------------------------------- report plots
def test_activation_fractions_by_hand():
    from benchmark.report_plots import activation_fractions
    counts = {"audio": [10, 0, 10, 10, 0], "video": [0, 10, 10, 10, 0], "text": [0, 0, 0, 10, 0]}
    # per-modality totals 30 / 30 / 10 -> frequencies: code 0 only audio, code 1 only video,
    # code 2 audio + video (text 0 % -> in between), code 3 all three (1/3, 1/3, 1) -> shares ≥ 5 %, code 4 dead
    f = activation_fractions(counts)
    assert f == {"one": pytest.approx(0.5), "two": pytest.approx(0.25), "all": pytest.approx(0.25), "used": 4,
                 "dead": 1}


def test_activation_normalises_each_modality_before_sharing():
    from benchmark.report_plots import activation_fractions
    # audio emits 100x more tokens; after per-modality normalisation code 0 is shared, not audio-only
    f = activation_fractions({"audio": [1000, 1000], "video": [10, 10]})
    assert f["all"] == 1.0 and f["one"] == 0.0


def test_report_figures_from_a_store(tmp_path):
    from benchmark.report_plots import make_report_figures
    store = tmp_path / "store"
    counts = {"audio": [5, 0, 3, 1], "video": [0, 4, 3, 1], "text": [0, 0, 2, 1]}
    for seed in (0, 1):
        for method in ("dcid", "dcid+toc"):   # a refiner reports its base's codebook: counted once, as dcid
            put(store, method, "ave", seed, {"V->A": {"acc": 50.0}}, diagnostics={"code_counts": counts})
    from benchmark.report_plots import collect_activation, tabled_bases
    assert list(collect_activation(tables_store_results(store))) == ["dcid"]
    assert "dcid" in tabled_bases() and "dcid@epochs=2" not in tabled_bases()
    t7_rows = {int(r.x): r.method for r in tables.load_table("t7").rows}       # the grid's specs (its budget pinned)
    for method, value in ((t7_rows[256], 50.0), (t7_rows[400], 55.0), (t7_rows[1024], 52.0)):
        for seed in (0, 1):
            put(store, method, "ave", seed, {"V->A": {"acc": value + seed}, "A->V": {"acc": value}}, main="acc")
            for task in ("avvp", "ave_avvp", "ucf_vgg"):
                put(store, method, task, seed, {"V->A": {"f1": value}, "A->V": {"f1": value - seed}}, main="f1")
    written, notes = make_report_figures(store)
    names = sorted(p.name for p in written)
    assert names == ["codebook_activation.png", "codebook_activation_simplex.png", "t7_size_curve.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.parent == store / "figures"
    assert any("srcid_fig3" in n for n in notes)
    assert math.isfinite(tables.build(tables.load_table("t7"), tables_store_results(store)).avg[2].summary.mean)
    # a rerun on an unchanged store redraws nothing; a changed input redraws exactly the figure that shows it
    stamps = {p.name: p.stat().st_mtime_ns for p in written}
    # ... and a budget-study probe (no table shows dcid@epochs=2) stays out of the activation figures
    probe = {m: v[::-1] for m, v in counts.items()}
    put(store, "dcid@epochs=2", "ave", 0, {"V->A": {"acc": 4.0}}, diagnostics={"code_counts": probe})
    make_report_figures(store)
    assert {p.name: p.stat().st_mtime_ns for p in written} == stamps
    put(store, t7_rows[400], "ave", 1, {"V->A": {"acc": 99.0}, "A->V": {"acc": 55.0}}, main="acc")
    make_report_figures(store)
    changed = {p.name for p in written if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"t7_size_curve.png"}
    (store / "figures" / "codebook_activation.png").unlink()      # a missing PNG is always drawn
    written, _ = make_report_figures(store)
    assert (store / "figures" / "codebook_activation.png").exists()


def test_end_to_end_with_the_runner_on_toy_entries(tmp_path, capsys):
    """Cells written by the real runner (tinymethod × tinytask) are matched through canonical specs:
    `tinymethod@dim=8+toc@q=4` (a default spelled out) finds the cells stored as `tinymethod+toc@q=4`."""
    from tasks.data import synthesize
    world, store = tmp_path / "world", tmp_path / "store"
    synthesize("smoke", 0, world)
    grid = {"name": "tiny", "title": "toy", "seeds": [0, 1], "methods": ["tinymethod", "tinymethod+toc@q=4"],
            "tasks": ["tinytask"], "table": {
                "columns": [{"task": "tinytask", "direction": "V->A"}, {"task": "tinytask", "direction": "A->V"}],
                "rows": [{"method": "tinymethod"}, {"method": "tinymethod@dim=8+toc@q=4", "label": "+TOC"}]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert cli_main(["grid", str(path), "--data", str(world), "--results", str(store), "-q"]) == 0
    assert run_table(store, tmp_path / "out", str(path), "--format", "csv,md", "--strict") == 0
    meta = json.loads((tmp_path / "out" / "tiny.meta.json").read_text())
    assert len(meta["cells"]) == 4 and meta["missing"] == [] and meta["git_sha"]
    assert {c["method"] for c in meta["cells"]} == {"tinymethod", "tinymethod+toc@q=4"}
    assert meta["world"].startswith("data:")


def test_typo_in_a_registered_option_names_the_grid_row(tmp_path):
    from benchmark.contracts import UserError
    grid = {"name": "typo", "methods": ["tinymethod"], "tasks": ["tinytask"],
            "table": {"columns": [{"task": "tinytask", "direction": "V->A"}],
                      "rows": [{"method": "tinymethod@dimm=4"}]}}
    with pytest.raises(UserError, match=r"typo.yaml: table.rows\[0\]: unknown option 'dimm'.*did you mean 'dim'"):
        tables.parse_table(grid, "typo.yaml")


def test_unknown_format_is_a_user_error(t1_store, tmp_path, capsys):
    assert run_table(t1_store, tmp_path, "t1", "--format", "pdf") == 2
    assert "unknown format pdf" in capsys.readouterr().err


# --------------------------------------------------------------------------- readable tables (issue 17)
def two_rows(tmp_path, a: dict[int, float], b: dict[int, float]):
    """A one-column table of methods a and b with the given per-seed scores (higher is better)."""
    store = tmp_path / "store"
    for method, values in (("a", a), ("b", b)):
        for seed, v in values.items():
            put(store, method, "t", seed, {"X": {"acc": v}})
    grid = {"name": "two", "seeds": [0, 1, 2], "methods": ["a", "b"], "tasks": ["t"],
            "table": {"avg": False, "columns": [{"task": "t", "direction": "X"}],
                      "rows": [{"method": "a"}, {"method": "b"}]}}
    return tables.parse_table(grid), tables_store_results(store)


def test_bold_only_where_the_best_is_significantly_ahead(tmp_path):
    spec, results = two_rows(tmp_path / "1", {0: 56.0, 1: 44.0, 2: 50.0}, {0: 43.0, 1: 55.0, 2: 49.0})
    bt = tables.build(spec, results)                 # a leads by 1 point with a spread of ±12: a tie
    assert bt.column_best() == [set()] and "| a | 50.00 ± " in tables.to_markdown(bt)
    assert "no bold = a tie within seed noise" in tables.caption(bt)
    spec, results = two_rows(tmp_path / "2", {0: 56.0, 1: 54.0, 2: 55.0}, {0: 50.1, 1: 48.0, 2: 49.2})
    assert tables.build(spec, results).column_best() == [{0}]      # ~6 points ahead on every seed


def test_seeds_default_to_those_every_row_has(tmp_path, capsys):
    """Rows are compared on the same seeds: a row with seeds 0, 1 against one with seed 0 only gives seed 0, and
    one warning names the seed left out; --seeds still picks any set (with a warning on unequal counts)."""
    spec, results = two_rows(tmp_path, {0: 50.0, 1: 51.0}, {0: 40.0})
    bt = tables.build(spec, results)
    assert bt.seeds == [0] and not bt.missing
    assert [w for w in bt.warnings if w.startswith("seed(s) 1 left out: 1 row(s)")], bt.warnings
    chosen = tables.build(spec, results, seeds=[0, 1])
    assert [w for w in chosen.warnings if "different seed counts (1 to 2 of seeds 0, 1)" in w]
    assert tables.build(spec, results, seeds=[0]).warnings == []
    spec, results = two_rows(tmp_path / "2", {0: 50.0, 1: 51.0}, {2: 41.0})   # no seed shared by all rows
    assert tables.build(spec, results).seeds == [0, 1, 2]


def test_no_paper_and_no_ci(t1_store, tmp_path):
    assert run_table(t1_store, tmp_path, "t1", "--format", "md", "--no-paper", "--no-ci") == 0
    md = (tmp_path / "t1.md").read_text()
    assert "\n| CODIS | **52.10** | **52.60** |" in md
    assert "(36.8)" not in md and "In parentheses" not in md and "±" not in md.split("\n\n")[1]
    assert "Mean over seeds of" in md


def test_narrow_terminal_never_cuts_cells(t1_store):
    from rich.console import Console
    bt = tables.build(tables.load_table("t1"), tables_store_results(t1_store))
    console = Console(width=80, record=True, color_system=None)
    console.print(tables.to_rich(bt, width=80))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for line in tables.cell_texts(bt):
        for t in line:
            if t.state == "ok":
                assert f"{t.mean} ± {t.pm}" in text


def test_captions_name_the_paper():
    assert tables.load_table("t1").title.startswith("FCCID paper, Table 1")
    assert tables.load_table("srcid_t2").title.startswith("SRCID paper, Table II")
    for name in tables.table_names():
        spec = tables.load_table(name)
        assert "seed 00" not in (spec.title + spec.paper_source).lower(), name


def test_gc_moves_cells_computed_under_older_keys(tmp_path):
    """After a key change (here: a stale key for `dcid`), `gc` moves exactly the cells whose key is not the one
    their spec has today; the current cell stays and the table's duplicate warning goes away."""
    import subprocess
    import sys
    from benchmark import spec as specs
    store = tmp_path / "store"
    current = specs.cell_key(specs.parse_method("dcid"), specs.parse_task("ave"), "fp", 0)
    for key, acc, created in ((current, 20.0, "2026-02-01T00:00:00+00:00"), ("0123456789abcdef", 10.0,
                                                                               "2026-01-01T00:00:00+00:00")):
        put(store, "dcid", "ave", 0, {"V->A": {"acc": acc}}, key=key, created=created)
        path = store / "cells" / "ave" / "dcid" / key / "result.json"
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "data_fingerprint": "fp"}))
    root = Path(__file__).resolve().parent.parent.parent

    def gc(*extra):
        return subprocess.run([sys.executable, "-m", "benchmark", "gc", "--results", str(store), *extra], cwd=root,
                              capture_output=True, text=True)
    dry = gc("--dry-run")
    assert dry.returncode == 0 and "1 stale cell(s)" in dry.stdout and "0123456789abcdef" in dry.stdout
    assert (store / "cells" / "ave" / "dcid" / "0123456789abcdef").is_dir()
    done = gc()
    assert done.returncode == 0 and "1 stale cell(s) moved to" in done.stdout, done.stdout + done.stderr
    assert [p.name for p in (store / "cells" / "ave" / "dcid").iterdir() if p.is_dir()] == [current]
    assert list(store.glob("stale/*/ave/dcid/0123456789abcdef/result.json"))
    assert "0 stale cell(s)" in gc().stdout
    missing = subprocess.run([sys.executable, "-m", "benchmark", "gc", "--results", str(tmp_path / "none")],
                             cwd=root, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no result store")


def _rendered(renderable, width: int) -> str:
    from rich.console import Console
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_at_80_columns_a_table_is_stacked_one_line_per_row_and_group(t1_store):
    bt = tables.build(tables.load_table("t1"), tables_store_results(t1_store))
    text = _rendered(tables.to_rich(bt, width=80), 80)
    lines = text.splitlines()
    assert "…" not in text and max(map(len, lines)) <= 80
    assert len([ln for ln in lines if "V→A" in ln and "A→V" in ln]) == 1          # one header: 2 value columns
    codis = next(i for i, ln in enumerate(lines) if ln.startswith(" CODIS "))
    block = "\n".join(lines[codis:codis + 12])
    for group in ("AVE", "AVVP", "AVE→AVVP", "UCF(v)↔VGG(a)", "Avg."):
        assert re.search(rf"^\s+(CODIS\s+)?{re.escape(group)}\s+\d", block, re.M), group
    texts = tables.cell_texts(bt)
    for line in texts:
        for t in line:
            if t.state == "ok":
                assert f"{t.mean} ± {t.pm}" in text and (not t.paper or f"({t.paper})" in text)
    words = " ".join(text.split())
    assert all(" ".join(r.label.replace("->", "→").split()) in words.replace("\n", " ") or
               all(w in words for w in r.label.replace("->", "→").split()) for r in bt.spec.rows)
    assert " ".join(tables.pretty_label(tables.caption(bt)).split()) in words   # the caption whole, full width
    wide = _rendered(tables.to_rich(bt, width=200), 200)
    assert "┃" in wide and "┃" not in text and max(map(len, wide.splitlines())) > 100   # wide stays wide


def detection_store(root: Path, world: str = "default-s0") -> list:
    """Two rows on AVVP: `good` above the all-positive F1 floor (3.8), `bad` below it on V→A."""
    for seed in SEEDS:
        for method, f1 in (("good", 30.0 + seed), ("bad", 1.0 + seed)):
            put(root, method, "avvp", seed, {d: {"f1": f1 if d == "V->A" else 40.0, "mAP": 20.0, "floor_f1": 3.8,
                                                 "chance_mAP": 3.0} for d in ("V->A", "A->V")},
                main="f1", world=world)
    return tables_store_results(root)


DETECTION = {"name": "det", "seeds": [0, 1, 2], "methods": ["good", "bad"], "tasks": ["avvp"],
             "table": {"avg": False, "columns": [{"task": "avvp", "direction": "V->A", "metric": "f1"},
                                                 {"task": "avvp", "direction": "A->V", "metric": "f1"},
                                                 {"task": "avvp", "direction": "V->A", "metric": "mAP"}],
                       "rows": [{"method": "good"}, {"method": "bad"}]}}


def test_a_cell_below_its_floor_is_marked_in_every_format(tmp_path):
    bt = tables.build(tables.parse_table(DETECTION), detection_store(tmp_path))
    assert [[c.below_floor for c in line] for line in bt.cells] == [[False, False, False], [True, False, False]]
    assert bt.cells[1][0].floor == pytest.approx(3.8)
    mark = tables.BELOW_FLOOR_MARK
    md = tables.to_markdown(bt)
    assert f"| bad | 2.00{mark} ± " in md and "| good | **31.00** ± " in md and md.count(mark) == 2   # + caption
    assert f"{mark} = at or below the floor of its labels" in tables.caption(bt)
    assert r"2.00$\downarrow$ $\pm$" in tables.to_latex(bt)
    assert f"2.00{mark} ± " in _rendered(tables.to_rich(bt, width=200), 200)
    rows = list(csv.DictReader(tables.to_long_csv(bt).splitlines()))
    flags = {(r["method"], r["direction"], r["metric"], r["seed"]): r["below_floor"] for r in rows}
    assert flags[("bad", "V->A", "f1", "0")] == "true" and flags[("good", "V->A", "f1", "0")] == "false"
    assert flags[("bad", "A->V", "f1", "0")] == "false" and flags[("bad", "V->A", "floor_f1", "0")] == ""
    clean = tables.build(tables.parse_table({**DETECTION, "table": {**DETECTION["table"], "rows": [
        {"method": "good"}]}}), detection_store(tmp_path / "2"))
    assert mark not in tables.to_markdown(clean) + tables.to_latex(clean)    # no mark, no legend when none is below


def test_every_table_of_a_smoke_world_carries_the_banner(tmp_path):
    smoke = tables.build(tables.parse_table(DETECTION), detection_store(tmp_path / "s", world="smoke-s0"))
    assert tables.to_markdown(smoke).startswith(f"> **{tables.SMOKE_BANNER}**\n")
    assert f"% {tables.SMOKE_BANNER}" in tables.to_latex(smoke)
    assert tables.to_latex(smoke).count("plumbing only") == 2                # a comment and the caption
    for width in (80, 200):
        assert _rendered(tables.to_rich(smoke, width=width), width).startswith("SMOKE: ")
    default = tables.build(tables.parse_table(DETECTION), detection_store(tmp_path / "d"))
    assert "plumbing" not in tables.to_markdown(default) + tables.to_latex(default) + _rendered(
        tables.to_rich(default, width=200), 200)


def test_captions_name_tasks_as_the_headers_do(t1_store, tmp_path):
    bt = tables.build(tables.load_table("t1"), tables_store_results(t1_store))
    text = tables.caption(bt)
    assert "(AVE: acc; AVE->AVVP: f1; AVVP: f1; UCF(v)<->VGG(a): acc)" in text and "ave_avvp" not in text
    assert "AVE→AVVP: f1" in tables.to_markdown(bt)
    det = tables.build(tables.parse_table(DETECTION), detection_store(tmp_path))
    assert "AVVP V->A: F1 3.80, mAP 3.00" in tables.floor_text(det)


def test_a_smoke_world_row_reads_the_cells_its_grid_ran_at_the_smoke_preset():
    """`grid --profile smoke` runs `codis` as `codis@scale=smoke`; the table row `codis` reads it on that world
    (and only there: the default world's `codis@scale=smoke` cell is another method)."""
    from types import SimpleNamespace as R
    from benchmark.tables.index import table_method
    smoke = lambda m: table_method(R(method=m, world="smoke-s0"))
    assert smoke("codis@scale=smoke") == "codis"
    assert smoke("dcid@quantizer=rvq,scale=smoke+toc") == "dcid@quantizer=rvq+toc"
    assert smoke("srcid@only1=true,scale=smoke") == "srcid@only1=true"
    assert smoke("turn@scale=smoke+toc-random") == "turn+toc-random"
    assert smoke("dcid@epochs=16,levels=2,quantizer=rvq") == "dcid@epochs=16,levels=2,quantizer=rvq"
    assert table_method(R(method="codis@scale=smoke", world="default-s0")) == "codis@scale=smoke"


def test_cells_read_from_a_head_the_head_study_found_moving_are_named_lower_bounds(tmp_path):
    # the study's record: raw's audio head agrees at scales 1, 2, 4 (settled by the budget, 2); its video head still
    # climbs at 4 -> only the cells read from video, on the data the study judged, are lower bounds
    from benchmark import budget
    store = tmp_path / "store"
    rows = {str(s): {"val": {"audio": {"0": 70.0, "1": 70.2}, "video": {"0": 40.0 + 10 * s, "1": 41.0 + 10 * s}}}
            for s in (1, 2, 4)}
    record = {"tasks": {"avvp": {"scale": 2, "exempt": ["raw"], "data_fingerprints": ["fp-studied"],
                                 "rows": {"raw": rows}}}}
    (store / "tables").mkdir(parents=True)
    (store / "tables" / "head_budget.json").write_text(json.dumps(record))
    assert budget.unsettled_heads(store) == {("avvp", "raw"): {"heads": ["video"], "data": ["fp-studied"]}}
    grid = {"name": "lb", "seeds": [0, 1], "methods": ["raw", "cca"], "tasks": ["avvp"],
            "table": {"columns": [{"task": "avvp", "direction": "V->A"}, {"task": "avvp", "direction": "A->V"}],
                      "rows": [{"method": "raw", "label": "Raw"}, {"method": "cca", "label": "CCA"}]}}
    for data, expected in (("fp-studied", True), ("fp-other-world", False)):
        for method in ("raw", "cca"):
            for seed in (0, 1):
                put(store, method, "avvp", seed, {"V->A": {"f1": 60.0 + seed}, "A->V": {"f1": 50.0 + seed}},
                    main="f1", data=data, world=data)
        bt = tables.build(tables.parse_table(grid), tables_store_results(store), world=data,
                          unsettled=budget.unsettled_heads(store))
        caption = tables.caption(bt)
        assert ("Lower bounds" in caption) is expected
        if expected:
            assert bt.lower_bounds == {("Raw", "avvp", "video"): ["V->A"]}
            assert "Raw, AVVP V->A (video head)" in caption
    (store / "tables" / "head_budget.json").write_text("{not json")
    assert budget.unsettled_heads(store) == {}
