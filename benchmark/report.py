"""The offline HTML report: one self-contained page (`<out>/index.html`) built from what the store holds on disk.

It reads only files other commands wrote — `tables/*.md` (+ `*.meta.json`), `tables/claims.md`, `figures/*.png`
and every cell's `result.json` / `env.json` — so it never recomputes a number and cannot disagree with the tables.
Figures are embedded as base64 PNGs, CSS and JS are inline and a Content-Security-Policy forbids any request: the
file opens from a disk, a mail attachment or a CI artifact with no server and no network.

A table cell as the Markdown renderer writes it (`**68.73**† ± 5.18 [n=2] (37.6)`) is split into spans (mean,
convergence mark, CI, seed count, paper number) so that checkboxes can hide the CIs and the paper numbers; rows the
grid marks `reference: true` (floors and ceilings) can be hidden too.
"""
from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path

from .contracts import UserError
from .report_plots import _natural
from .atomic import atomic_write_text
from .results import read_json
from .store import ENV, Store, environment

# a table cell of the Markdown tables: mean (bold when best), marks, ± CI, [n=k], (paper)
CELL = re.compile(r"^(?P<mean>\*\*[-+]?\d[\d.]*\*\*|[-+]?\d[\d.]*|n/a)(?P<flag>[^\s\d±(\[]*)(?P<ci> ± \S+)?"
                  r"(?P<n> \[n=\d+\])?(?P<paper> \([^()]*\))?$")
MISSING = re.compile(r"^(?P<word>missing)(?P<paper> \([^()]*\))?$")
TOGGLES = (("hide-ref", "floor / ceiling rows"), ("hide-ci", "95 % CIs"), ("hide-paper", "paper numbers"))


# --------------------------------------------------------------------------- markdown pieces
def _markdown():
    from markdown_it import MarkdownIt
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _split_row(line: str) -> list[str]:
    """Cells of one pipe-table line (`\\|` is a literal bar, as the table renderer escapes it)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells = re.split(r"(?<!\\)\|", body)
    return [c.replace("\\|", "|") for c in cells]


def cell_html(text: str, md) -> str:
    """One data cell as spans the toggles address; anything else is inline Markdown as it is."""
    raw = text.strip()
    if m := CELL.match(raw):
        mean = m["mean"]
        out = (f"<strong>{html.escape(mean[2:-2])}</strong>" if mean.startswith("**")
               else html.escape(mean))
        out = f'<span class="mean">{out}</span>'
        if m["flag"]:
            out += f'<span class="flag">{html.escape(m["flag"])}</span>'
        if m["ci"]:
            out += f'<span class="ci">{html.escape(m["ci"])}</span>'
        if m["n"]:
            out += f'<span class="nmark">{html.escape(m["n"])}</span>'
        if m["paper"]:
            out += f'<span class="paper">{html.escape(m["paper"])}</span>'
        return out
    if m := MISSING.match(raw):
        return '<span class="missing">missing</span>' + (
            f'<span class="paper">{html.escape(m["paper"])}</span>' if m["paper"] else "")
    return md.renderInline(raw)


def table_html(lines: list[str], md, rows: dict[str, tuple[bool, bool]] | None = None) -> str:
    """A pipe table (header, alignment row, body) as an HTML table; `rows`: (reference, sep) by row label."""
    head, align, body = _split_row(lines[0]), _split_row(lines[1]), [_split_row(x) for x in lines[2:]]
    right = [a.strip().endswith(":") and not a.strip().startswith(":") for a in align]
    style = lambda j: ' class="num"' if j < len(right) and right[j] else ""  # noqa: E731
    out = ['<table class="results"><thead><tr>']
    out += [f"<th{style(j)}>{md.renderInline(h.strip())}</th>" for j, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in body:
        flags = (rows or {}).get(row[0].strip() if row else "", (False, False))
        classes = [c for c, on in zip(("ref", "sep"), flags) if on]
        if row and re.match(r"^ {2,}\S", row[0]):
            classes.append("sub")
        out.append(f'<tr class="{" ".join(classes)}">' if classes else "<tr>")
        out.append(f"<th>{md.renderInline(row[0].strip())}</th>" if row else "")
        out += [f"<td{style(j + 1)}>{cell_html(c, md)}</td>" for j, c in enumerate(row[1:])]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def markdown_html(text: str, md, rows=None, shift: int = 2) -> str:
    """A Markdown file: pipe tables through `table_html` (the first one gets `rows`), the rest through
    markdown-it; headings moved `shift` levels down to sit under the page's sections."""
    parts, block, tables = [], [], 0

    def flush():
        if block:
            parts.append(md.render("\n".join(block)))
            block.clear()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$",
                                                                                   lines[i + 1]):
            flush()
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            first = tables == 0
            parts.append(f'<div class="scroll">{table_html(lines[i:j], md, rows if first else None)}</div>')
            tables += 1
            i = j
        else:
            block.append(lines[i])
            i += 1
    flush()
    out = "".join(parts)
    return re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m[1]}h{min(6, int(m[2]) + shift)}>", out)


# --------------------------------------------------------------------------- what the store holds
def _grid_rows(meta: dict | None, name: str) -> dict[str, tuple[bool, bool]] | None:
    """(reference, sep) by displayed row label, from the grid that built the table (its path in meta.json, else
    the package's grid of that name): by label, so a grid that gained rows since the table was written still
    marks the right ones. None when neither grid can be read."""
    from .gridspec import load_grid
    from .tables import parse_table, pretty_label
    candidates = [Path(meta["grid"])] if meta and meta.get("grid") else []
    candidates.append(Path(__file__).resolve().parent / "grids" / f"{name}.yaml")
    for path in candidates:
        try:
            spec = parse_table(load_grid(path), path)
        except (OSError, UserError):
            continue
        return {pretty_label(r.label): (r.reference, r.sep and k > 0) for k, r in enumerate(spec.rows)}
    return None


def _table_sections(tables: Path, md) -> list[tuple[str, str, str]]:
    """(anchor, title, html) per `*.md` table (claims excluded): paper tables first, then the others."""
    found = [p for p in tables.glob("*.md") if p.stem != "claims"]
    found.sort(key=lambda p: (not (tables / f"{p.stem}.meta.json").exists(), not p.stem.startswith("t"),
                              _natural(p.stem)))
    out = []
    for path in found:
        meta = read_json(tables / f"{path.stem}.meta.json")
        text = path.read_text().lstrip()
        first = text.splitlines()[0].strip("*# ") if text else ""
        title = (meta or {}).get("title") or first or path.stem
        if first and first == title:
            text = text.split("\n", 1)[-1]   # the file's title line becomes the section heading
        body = markdown_html(text, md, _grid_rows(meta, path.stem) if meta else None)
        out.append((f"table-{path.stem}", title, body))
    repeated = {t for _, t, _ in out if sum(t == u for _, u, _ in out) > 1}
    return [(a, f"{t} ({a.removeprefix('table-')})" if t in repeated else t, b) for a, t, b in out]   # unique TOC


def _figures(figures: Path) -> list[tuple[str, str]]:
    return [(p.stem, base64.b64encode(p.read_bytes()).decode()) for p in sorted(figures.glob("*.png"))]


def _short(sha: str | None, dirty: bool | None = False) -> str:
    return (sha or "?")[:10] + ("+dirty" if dirty else "")


def provenance(store: Path, head: str | None = None) -> list[dict]:
    """One row per cell: what identifies it and how it was made (result.json, env.json); `older` when the code
    that computed it is not `head` (the checkout rendering the report; a dirty tree counts as other code).
    `converged` is what the tables' † reads (the budget study, its committed record, else the loss diagnostic),
    named with its source, so the report and the tables never disagree on a cell."""
    from . import budget
    results = list(Store(store).results())
    study = budget.store_verdicts(results, Path(store))
    rows = []
    for r in results:
        env = r.sidecar(ENV) or {}
        verdict, source = study(r), "study"
        if verdict is None:
            verdict, source = r.converged, "loss"
        rows.append({"task": r.task, "method": r.method, "seed": r.seed, "key": r.key,
                     "world": r.world, "fingerprint": r.data_fingerprint, "pretrain": r.pretrain_key,
                     "converged": "—" if verdict is None else f"{'yes' if verdict else 'no'} ({source})",
                     "created": r.created, "git": _short(env.get("git_sha"), env.get("git_dirty")) if env.get(
                         "git_sha") else "",
                     "older": head is not None and (env.get("git_sha") != head or bool(env.get("git_dirty")))})
    return sorted(rows, key=lambda r: (str(r["task"]), str(r["method"]), r["seed"] or 0))


# --------------------------------------------------------------------------- the page
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{padding:14px 24px 6px}h1{margin:0 0 4px;font-size:22px}.meta{color:#555;font-size:13px}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:8px 24px;
display:flex;flex-wrap:wrap;gap:6px 18px;align-items:center}
nav a{color:#0b57d0;text-decoration:none}nav .toggles{margin-left:auto;display:flex;gap:14px}
main{padding:0 16px 40px}h2{margin:28px 0 8px;border-bottom:2px solid #333;font-size:19px}
section.table{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:14px 0}
section.table h3{margin:2px 0 8px;font-size:16px}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{padding:2px 5px;border-bottom:1px solid #eee;
white-space:nowrap;vertical-align:top}thead th{border-bottom:2px solid #999;text-align:left;background:#f3f3f3}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tbody th{text-align:left;font-weight:600}
tr.sep>*{border-top:2px solid #999}tr.ref{background:#f6f6ee;font-style:italic}tr.sub th{padding-left:26px;
font-weight:400}.flag{color:#b3261e}.ci,.nmark{color:#666;font-size:11px}.paper{color:#0b57d0;font-size:11px;
margin-left:2px}.missing{color:#b06000}
body.hide-ref tr.ref{display:none}body.hide-ci .ci,body.hide-ci .nmark{display:none}
body.hide-paper .paper{display:none}tr.older td{background:#fff4e5}tr.older td:last-child{color:#b06000}
details{margin:6px 0}summary{cursor:pointer;color:#333}.caption{color:#444;font-size:12.5px;max-width:1200px}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:14px 0;padding:8px}
figure img{max-width:100%;height:auto;cursor:zoom-in;display:block}figure img.full{max-width:none;cursor:zoom-out}
figcaption{color:#555;font-size:12.5px;margin-top:4px}.fig-scroll{overflow-x:auto}
#prov-filter{margin:6px 0;padding:4px 8px;width:320px}code{font-size:12.5px}
.note{color:#b06000}h2,section,figure{scroll-margin-top:48px}
"""

SCRIPT = """
document.querySelectorAll('input[data-toggle]').forEach(function (box) {
  var apply = function () { document.body.classList.toggle(box.dataset.toggle, !box.checked); };
  box.addEventListener('change', apply); apply();
});
document.querySelectorAll('figure img').forEach(function (img) {
  img.addEventListener('click', function () { img.classList.toggle('full'); });
});
var filter = document.getElementById('prov-filter');
if (filter) {
  filter.addEventListener('input', function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    document.querySelectorAll('#provenance tbody tr').forEach(function (tr) {
      var text = tr.textContent.toLowerCase();
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
      tr.style.display = ok ? '' : 'none'; shown += ok ? 1 : 0;
    });
    document.getElementById('prov-count').textContent = shown;
  });
}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def render(store: Path) -> tuple[str, list[str]]:
    """The page for the store at `store`, and notes on what it lacks (each naming the command that makes it)."""
    tables_dir, md = store / "tables", _markdown()
    sections = _table_sections(tables_dir, md) if tables_dir.is_dir() else []
    if not sections:
        raise UserError(f"no tables in {tables_dir} yet (run `python -m benchmark table all --results {store} "
                        f"--format all` first)")
    notes = []
    figures = _figures(store / "figures")
    if not figures:
        notes.append(f"no figures in {store / 'figures'} (run `python -m benchmark plot report --results {store}`)")
    claims_md = tables_dir / "claims.md"
    if not claims_md.is_file():
        notes.append(f"no claims in {claims_md} (run `python -m benchmark claims --results {store}`)")
    head = environment()
    cells = provenance(store, head.get("git_sha"))
    older = sum(c["older"] for c in cells)
    metas = [m for p in sorted(tables_dir.glob("*.meta.json")) if isinstance(m := read_json(p), dict)]
    worlds = sorted({str(m["world"]) for m in metas if m.get("world")})
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    code = f"code HEAD {_short(head.get('git_sha'), head.get('git_dirty'))}" + (
        f" ({older} of {len(cells)} cells computed by other code, marked below)" if older else "")

    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,"><title>unibench report</title>', f"<style>{STYLE}</style></head><body>",
           "<header><h1>unibench report</h1>",
           f'<div class="meta">world {_esc(", ".join(worlds) or "?")} · {len(sections)} tables · '
           f"{len(figures)} figures · {len(cells)} cells · {_esc(code)} · written {_esc(now)}</div></header>",
           '<nav><a href="#tables">Tables</a><a href="#figures">Figures</a><a href="#claims">Claims</a>'
           '<a href="#provenance-section">Provenance</a><span class="toggles">']
    out += [f'<label><input type="checkbox" data-toggle="{cls}" checked> {text}</label>' for cls, text in TOGGLES]
    out.append("</span></nav><main>")
    out += [f'<p class="note">{_esc(n)}</p>' for n in notes]
    out.append('<h2 id="tables">Tables</h2><p>')
    out.append(" · ".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in sections) + "</p>")
    out += [f'<section class="table" id="{a}"><h3>{_esc(t)}</h3>{body}</section>' for a, t, body in sections]
    out.append('<h2 id="figures">Figures</h2>')
    out += [f'<figure id="figure-{_esc(name)}"><div class="fig-scroll"><img alt="{_esc(name)}" '
            f'src="data:image/png;base64,{data}"></div><figcaption>{_esc(name)}.png (click: full size)'
            f"</figcaption></figure>" for name, data in figures]
    out.append('<h2 id="claims">Claims</h2>')
    out.append(markdown_html(claims_md.read_text(), md) if claims_md.is_file() else '<p class="note">none</p>')
    out.append('<h2 id="provenance-section">Provenance</h2>'
               f'<details><summary>{len(cells)} cells: method spec, task, seed, cell key, world and its fingerprint, '
               "pretraining key, convergence (the budget study where it covers the pretraining, else the loss), "
               "code version</summary>"
               '<input id="prov-filter" type="search" placeholder="filter, e.g. dcid ave">'
               f' <span id="prov-count">{len(cells)}</span> shown<div class="scroll">'
               '<table id="provenance"><thead><tr><th>task</th><th>method</th><th>seed</th><th>key</th><th>world</th>'
               "<th>fingerprint</th><th>pretraining</th><th>converged</th><th>created</th><th>git</th></tr></thead>"
               "<tbody>")
    out += [('<tr class="older">' if c["older"] else "<tr>")
            + "".join(f"<td>{_esc(c[k])}</td>" for k in ("task", "method", "seed", "key", "world", "fingerprint",
                                                         "pretrain", "converged", "created", "git")) + "</tr>"
            for c in cells]
    out.append(f"</tbody></table></div></details></main><script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n", notes


def write_report(results: str | Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Render the store's report into `<out>/index.html` (default `<results>/report`), written atomically;
    other files in `out` (a screenshot) are left alone. Returns (path, notes)."""
    store = Path(results)
    if not store.is_dir():
        raise UserError(f"--results '{store}' is not a directory (run `python -m benchmark grid ...` and "
                        f"`python -m benchmark table all --format all` first)")
    target = Path(out) if out else store / "report"
    if target.exists() and not target.is_dir():
        raise UserError(f"--out '{target}' exists and is not a directory")
    page, notes = render(store)
    path = target / "index.html"
    atomic_write_text(path, page)
    return path, notes


# --------------------------------------------------------------------------- checking it in a real browser
def chromium() -> str | None:
    """The Chromium to drive: $UNIBENCH_CHROMIUM, else the OS package's (Debian: /usr/bin/chromium), else None
    (Playwright's own download, if one was installed)."""
    import os
    import shutil
    return os.environ.get("UNIBENCH_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser_check(page_path: str | Path, screenshot: str | Path | None = None,
                  viewport: tuple[int, int] = (1600, 1000)) -> dict:
    """Open the page in headless Chromium (Playwright) and report what a reader would meet: body rows per
    results table, console errors and page errors, requests that left the file, and whether each toggle hides
    what it names and shows it again. Saves a viewport screenshot when asked."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise UserError("--check needs Playwright (pip install 'unibench[report]') and a Chromium "
                        "(Debian: apt-get install chromium)") from None
    exe = chromium()
    found = {"errors": [], "requests": [], "toggles": {}}
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        except Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--check: cannot start Chromium ({exe or 'Playwright download'}): {first}") from None
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: found["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: found["errors"].append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                    else found["requests"].append(r.url))
            page.goto(Path(page_path).resolve().as_uri(), wait_until="load")
            found["tables"] = page.eval_on_selector_all(
                "section.table table.results", "ts => ts.map(t => t.tBodies[0].rows.length)")
            found["figures"] = page.eval_on_selector_all("figure img", "is => is.filter(i => i.naturalWidth > 0).length")
            visible = {"hide-ref": "tr.ref", "hide-ci": ".ci", "hide-paper": ".paper"}
            for toggle, selector in visible.items():
                count = lambda: page.eval_on_selector_all(  # noqa: E731
                    selector, "es => es.filter(e => e.getClientRects().length > 0).length")
                box = f'input[data-toggle="{toggle}"]'
                shown = count()
                page.uncheck(box)
                hidden = count()
                page.check(box)
                found["toggles"][toggle] = {"shown": shown, "hidden": hidden, "again": count()}
            if screenshot:
                page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    found["toggles_ok"] = all(t["shown"] > 0 and t["hidden"] == 0 and t["again"] == t["shown"]
                              for t in found["toggles"].values() if t["shown"])
    return found
