"""`gc [--results DIR] [--delete]`: find result cells whose key is not the key their (method, task, data, seed)
has under the current code — computed before a preset, card version or key-schema change — and move them out of
the store, so tables stop reporting them as duplicates. Nothing is deleted unless asked."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from .. import migrate, spec
from ..contracts import UserError
from ..store import Store, remove_tree
from ..ui import console


def add_parser(sub) -> None:
    p = sub.add_parser("gc", help="move result cells computed under older keys out of the store")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default results/)")
    p.add_argument("--dry-run", action="store_true", help="only list what would move")
    p.add_argument("--delete", action="store_true", help="delete stale cells instead of moving them to "
                                                          "<results>/stale/<time>/")
    p.set_defaults(func=main)


def stale_cells(store: Store) -> list:
    """Results whose stored key differs from the key of their spec today (specs that no longer parse count too)."""
    out = []
    for r in store.results():
        try:
            key = spec.cell_key(spec.parse_method(r.method), spec.parse_task(r.task), r.data_fingerprint, r.seed)
        except UserError:
            key = None
        if key != r.key:
            out.append(r)
    return out


def main(args) -> int:
    store = Store(args.results)
    if not (store.root / "cells").is_dir():
        raise UserError(f"no result store at {store.root} (no cells/ folder)")
    if not args.dry_run:
        moved = migrate.migrate(store, force=True)
        if moved:
            console.print(f"{moved} pretraining(s) of an older store re-keyed by the epochs they trained")
    stale = stale_cells(store)
    if args.dry_run or not stale:
        for r in stale:
            console.print(f"stale: {r.method} × {r.task} × seed {r.seed} ({r.key})")
        console.print(f"{len(stale)} stale cell(s) in {store.root}" + (" (dry run)" if args.dry_run else ""))
        return 0
    target = store.root / "stale" / time.strftime("%Y%m%dT%H%M%S")
    for r in stale:
        folder = store.inside(Path(r.directory))   # results() already skips cells behind links out of the store
        if args.delete:
            remove_tree(folder)
        else:
            dest = store.inside(target / folder.relative_to(store.root / "cells"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(dest))
    where = "deleted" if args.delete else f"moved to {target}"
    console.print(f"{len(stale)} stale cell(s) {where}")
    return 0
