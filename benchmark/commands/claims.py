"""`claims`: evaluate the seven claims of docs/PAPERS.md on the result store (holds / fails / inconclusive).

Rules are fixed in `benchmark/claims.py`, the claims in `benchmark/paper_claims.py`; verdicts are printed and written to
`<out>/claims.md` and `<out>/claims.json`. Never trains.
"""
from __future__ import annotations

from pathlib import Path

from rich.padding import Padding

from .. import claims, claims_narrow, paper_claims
from .. import outputs
from ..api import read_store
from ..tables.text import SMOKE_BANNER, is_smoke
from ..ui import console, err_console


def add_parser(sub) -> None:
    p = sub.add_parser("claims", help="check the papers' claims on stored results (never trains)")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--out", metavar="DIR", help="where claims.md / claims.json go (default <results>/tables)")
    p.add_argument("--world", help="world label to use when the store holds several (e.g. default-s0)")
    p.set_defaults(func=main)


def main(args) -> int:
    results_dir = Path(args.results)
    out = outputs.check_dir(Path(args.out) if args.out else results_dir / "tables", "--out")
    found, index = paper_claims.evaluate(read_store(args.results, args.world), world=args.world)
    if is_smoke(index.world):
        console.print(f"[bold yellow]{SMOKE_BANNER}[/]", highlight=False)
    narrow = console.width < claims_narrow.NARROW    # a table would cut specs at 80 columns
    console.print((claims_narrow if narrow else claims).to_rich(found, index))
    console.print("Rules (a REL b, d = a − b paired by seed):", highlight=False)
    for rel, rule in claims.RULES.items():
        console.print(Padding(f"a {rel} b: {rule}", (0, 0, 0, 2)), highlight=False)   # wraps at words, indented
    console.print(Padding("< 2 paired seeds: inconclusive; a claim holds if every comparison holds, fails if any "
                          "fails.", (0, 0, 0, 2)), highlight=False)
    for w in index.warnings:
        err_console.print(f"[yellow]warning[/] {w}", soft_wrap=True, highlight=False)
    for path in claims.write(found, index, out):
        err_console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    return 0
