"""`report`: the offline HTML report of a store (every table, figure, claim and cell's provenance, one file).

    python -m benchmark report [--results DIR] [--out DIR] [--check]

Reads only what `table all --format all`, `claims` and `plot report` wrote (never recomputes); `--check` opens the
page in headless Chromium and saves `screenshot.png` beside it.
"""
from __future__ import annotations

from pathlib import Path

from ..ui import console, err_console


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an offline HTML report of the store (tables, figures, claims, "
                                      "provenance)")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--out", metavar="DIR", help="folder for index.html (default <results>/report)")
    p.add_argument("--check", action="store_true",
                   help="open the page in headless Chromium (needs Playwright): exit 1 on console errors, network "
                        "requests or broken toggles; writes screenshot.png beside index.html")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..outputs import check_dir
    from ..report import browser_check, write_report
    check_dir(args.out or Path(args.results) / "report", "--out")
    path, notes = write_report(args.results, args.out)
    for note in notes:
        err_console.print(f"[yellow]warning[/] {note}", soft_wrap=True, highlight=False)
    console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    if not args.check:
        return 0
    shot = Path(path).with_name("screenshot.png")
    found = browser_check(path, shot)
    rows = sum(found["tables"])
    console.print(f"Chromium: {len(found['tables'])} tables ({rows} rows), {found['figures']} figures, "
                  f"{len(found['errors'])} console errors, {len(found['requests'])} network requests, toggles "
                  f"{'ok' if found['toggles_ok'] else 'BROKEN'}; wrote {shot}", soft_wrap=True, highlight=False)
    for problem in found["errors"] + [f"request: {u}" for u in found["requests"]]:
        err_console.print(f"[red]problem[/] {problem}", soft_wrap=True, highlight=False)
    ok = found["toggles_ok"] and not found["errors"] and not found["requests"] and all(found["tables"])
    return 0 if ok else 1
