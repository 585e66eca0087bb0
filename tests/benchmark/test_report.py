"""The offline HTML report (issue 17): built from a fixture store (the committed tables and figures plus two cells),
user errors, and a real headless Chromium loading it (skipped with a reason when no browser can start)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmark.__main__ import main as cli_main
from benchmark.report import browser_check, cell_html, chromium

REPO = Path(__file__).resolve().parent.parent.parent


def cli(capsys, *args) -> tuple[int, str]:
    code = cli_main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1


@pytest.fixture
def store(tmp_path):
    """The repository's committed tables, claims and figures, and two cells for the provenance section."""
    root = tmp_path / "store"
    shutil.copytree(REPO / "results" / "tables", root / "tables")
    shutil.copytree(REPO / "results" / "figures", root / "figures")
    proven = next(key for row in json.loads((root / "tables" / "budget.json").read_text())["rows"]
                  if row["converged"] for key in row["pretrain_keys"].values())
    for key, method, converged, pretrain in (("aaaa000000000001", "dcid", False, None),
                                             ("aaaa000000000002", "cca", None, None),
                                             ("aaaa000000000003", "dcid", False, proven)):
        cell = root / "cells" / "ave" / method / key
        cell.mkdir(parents=True)
        training = {} if converged is None else {"training": {"converged": converged}}
        (cell / "result.json").write_text(json.dumps({
            "key": key, "method": method, "task": "ave", "seed": 0, "world": "default-s0", "pretrain_key": pretrain,
            "data_fingerprint": "e889f61b2bf7c31f", "metrics": {"V->A": {"acc": 40.0}}, "diagnostics": training}))
        (cell / "env.json").write_text(json.dumps({"git_sha": "0123456789abcdef", "git_dirty": True}))
    return root


def test_cells_split_into_spans_the_toggles_address():
    from benchmark.report import _markdown
    md = _markdown()
    cell = cell_html("**68.73**† ± 5.18 [n=2] (37.6)", md)
    assert cell == ('<span class="mean"><strong>68.73</strong></span><span class="flag">†</span>'
                    '<span class="ci"> ± 5.18</span><span class="nmark"> [n=2]</span><span class="paper"> (37.6)</span>')
    assert cell_html("3.95 ± 3.91", md) == '<span class="mean">3.95</span><span class="ci"> ± 3.91</span>'
    assert cell_html("37.63†", md) == '<span class="mean">37.63</span><span class="flag">†</span>'   # no CI
    assert cell_html("missing (51.3)", md) == '<span class="missing">missing</span><span class="paper"> (51.3)</span>'
    assert cell_html("**fails**", md) == "<strong>fails</strong>"      # anything else: inline Markdown
    assert cell_html("<b>x</b>", md) == "&lt;b&gt;x&lt;/b&gt;"          # never raw HTML


def test_report_holds_every_table_figure_claim_and_cell(store, capsys):
    (store / "report").mkdir()
    (store / "report" / "screenshot.png").write_bytes(b"kept")
    code, err = cli(capsys, "report", "--results", store)
    assert code == 0, err
    page = (store / "report" / "index.html").read_text()
    assert sorted(p.name for p in (store / "report").iterdir()) == ["index.html", "screenshot.png"]   # no temp
    assert (store / "report" / "screenshot.png").read_bytes() == b"kept"       # only index.html is the report's
    n_tables = len([p for p in (store / "tables").glob("*.md") if p.stem != "claims"])
    assert page.count('<table class="results">') >= n_tables + 1              # + the claims' tables
    assert len(re.findall(r'<section class="table" id="table-', page)) == n_tables
    t1 = page[page.index('id="table-t1"'):page.index("</section>", page.index('id="table-t1"'))]
    from benchmark.tables import load_table, pretty_label
    shown = (store / "tables" / "t1.md").read_text()
    refs = [r for r in load_table("t1").rows if r.reference and f"| {pretty_label(r.label)} |" in shown]
    assert len(refs) >= 2 and t1.count("<tbody>") == 1                      # chance, CCA (+ what the md holds)
    assert t1.count('<tr class="ref') == len(refs)                           # matched by label, not position
    assert '<span class="paper"> (36.8)</span>' in t1 and '<span class="ci"> ± ' in t1
    figures = len(list((store / "figures").glob("*.png")))
    assert page.count('src="data:image/png;base64,') == figures
    assert "Claims of the papers" in page and "FCCID &gt; DCID" in page
    prov = page[page.index('<table id="provenance">'):]
    assert prov.count("<tr") == 4 and "aaaa000000000001" in prov and "0123456789+dirty" in prov
    rows = {r[r.index("aaaa"):][:16]: r for r in prov.split("<tr")[2:]}
    assert ">no (loss)<" in rows["aaaa000000000001"] and ">—<" in rows["aaaa000000000002"]   # no study: the loss
    assert ">yes (study)<" in rows["aaaa000000000003"]          # the committed study outranks the loss, as in tables
    assert "default-src 'none'" in page                                         # the page may load nothing
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_report_user_errors_are_one_line(tmp_path, store, capsys):
    code, err = cli(capsys, "report", "--results", tmp_path / "nope")
    assert code == 2 and one_error_line(err) and "is not a directory" in err
    (tmp_path / "bare").mkdir()
    code, err = cli(capsys, "report", "--results", tmp_path / "bare")
    assert code == 2 and one_error_line(err) and "python -m benchmark table all" in err
    (tmp_path / "file").write_text("x")
    code, err = cli(capsys, "report", "--results", store, "--out", tmp_path / "file")
    assert code == 2 and one_error_line(err) and "is not a directory" in err
    shutil.rmtree(store / "figures")
    (store / "tables" / "claims.md").unlink()
    code, err = cli(capsys, "report", "--results", store, "--out", tmp_path / "r")
    assert code == 0 and "plot report" in err and "benchmark claims" in err   # what is missing, and the command


def _browser_or_skip():
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install '.[report]')")
    if chromium() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; or set UNIBENCH_CHROMIUM)")


def test_report_in_headless_chromium(store, tmp_path, capsys):
    _browser_or_skip()
    code, err = cli(capsys, "report", "--results", store, "--out", tmp_path / "site")
    assert code == 0, err
    try:
        found = browser_check(tmp_path / "site" / "index.html", tmp_path / "site" / "screenshot.png")
    except Exception as exc:   # noqa: BLE001 - a browser that cannot start here is an environment problem
        if "cannot start Chromium" in str(exc):
            pytest.skip(str(exc))
        raise
    # one HTML table per Markdown pipe table (a file may hold several: head_budget.md has one per task)
    n_tables = sum(len(re.findall(r"^\|[ :]*-{3,}", p.read_text(), flags=re.M))
                   for p in (store / "tables").glob("*.md") if p.stem != "claims")
    assert len(found["tables"]) == n_tables and all(found["tables"]), found["tables"]
    assert found["errors"] == [] and found["requests"] == []
    assert found["figures"] == len(list((store / "figures").glob("*.png")))
    assert found["toggles_ok"], found["toggles"]
    assert found["toggles"]["hide-ref"]["shown"] >= 3 and found["toggles"]["hide-paper"]["shown"] > 0
    assert (tmp_path / "site" / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_names_head_and_marks_cells_of_other_code(store, capsys):
    from benchmark.store import environment
    head = environment()
    cell = store / "cells" / "ave" / "chance" / "aaaa000000000004"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps({"key": "aaaa000000000004", "method": "chance", "task": "ave",
                                                  "seed": 0, "world": "default-s0", "metrics": {"V->A": {"acc": 3}}}))
    (cell / "env.json").write_text(json.dumps({"git_sha": head["git_sha"], "git_dirty": False}))
    code, err = cli(capsys, "report", "--results", store)
    assert code == 0, err
    page = (store / "report" / "index.html").read_text()
    header = page[page.index("<header>"):page.index("</header>")]
    assert f"code HEAD {(head['git_sha'] or '?')[:10]}" in header
    assert "3 of 4 cells computed by other code" in header                    # the fixture's three cells
    prov = page[page.index('<table id="provenance">'):]
    rows = re.findall(r"<tr( class=\"older\")?><td>[^<]*</td><td>([^<]*)</td>", prov)
    assert sorted((m, bool(c)) for c, m in rows) == [("cca", True), ("chance", False), ("dcid", True), ("dcid", True)]


def test_table_of_contents_titles_are_unique(store, capsys):
    (store / "tables" / "copy.md").write_text((store / "tables" / "t1.md").read_text())   # same title twice
    (store / "tables" / "copy.meta.json").write_text((store / "tables" / "t1.meta.json").read_text())
    code, err = cli(capsys, "report", "--results", store)
    assert code == 0, err
    page = (store / "report" / "index.html").read_text()
    toc = page[page.index('<h2 id="tables">'):page.index("<section")]
    titles = re.findall(r'<a href="#table-[^"]+">([^<]+)</a>', toc)
    assert len(titles) == len(set(titles)) == len(list((store / "tables").glob("*.md"))) - 1   # claims excluded
    assert any(t.endswith("(copy)") for t in titles) and any(t.endswith("(t1)") for t in titles)
