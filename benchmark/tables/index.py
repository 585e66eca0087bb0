"""The store indexed for reading: one world's results keyed by (method, task, seed), and the per-seed values
tables and claims compute from it (the mean over directions of one metric of one cell)."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..results import CellResult, as_results


@dataclass
class Index:
    """Results of one world keyed by (method, task, seed); duplicates resolved to the newest."""

    world: str | None
    cells: dict[tuple[str, str, int], CellResult]
    warnings: list[str] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)

    def get(self, method: str, task: str, seed: int) -> CellResult | None:
        return self.cells.get((method, task, int(seed)))

    def seeds(self, method: str, task: str | None = None) -> list[int]:
        return sorted({s for (m, t, s) in self.cells if m == method and (task is None or t == task)})


SMOKE_OPTION = re.compile(r"(@scale=smoke(?=[+]|$)|(?<=@)scale=smoke,|,scale=smoke(?=[,+]|$))")


def table_method(r: CellResult) -> str:
    """The spec a table row names for this cell: on the smoke world, grids run every preset method at
    `scale=smoke` (`--profile smoke`), and the row `codis` means `codis@scale=smoke` there."""
    return SMOKE_OPTION.sub("", r.method) if str(r.world or "").startswith("smoke-") else r.method


def build_index(results: Sequence[CellResult | dict], world: str | None = None,
                wanted: Iterable[tuple[str, str]] | None = None) -> Index:
    """Pick one world (the named one, else the one holding most of the wanted (method, task) cells) and key
    its results. Two results for one (method, task, seed) (e.g. after a task version bump) keep the newest
    (highest task_version, then latest `created`); the others are reported as duplicates. Plain result dicts
    (as in result.json) are accepted too."""
    results = as_results(results)
    warnings: list[str] = []
    wanted = set(wanted) if wanted is not None else None
    worlds = defaultdict(int)
    for r in results:
        if wanted is None or (table_method(r), r.task) in wanted:
            worlds[r.world] += 1
    if world is None and worlds:
        world = max(sorted(worlds, key=str), key=lambda w: worlds[w])
        if len(worlds) > 1:
            others = ", ".join(f"{w} ({n} cells)" for w, n in sorted(worlds.items(), key=str) if w != world)
            warnings.append(f"results from several worlds; using {world} ({worlds[world]} cells), "
                            f"ignoring {others} (choose with --world)")
    elif world is not None and world not in worlds and worlds:
        warnings.append(f"no results from world '{world}' (found: {', '.join(map(str, sorted(worlds, key=str)))})")
    cells: dict[tuple[str, str, int], CellResult] = {}
    dup: dict[tuple, list[CellResult]] = defaultdict(list)
    for r in results:
        if r.world != world:
            continue
        ident = (table_method(r), r.task, r.seed)
        dup[ident].append(r)
    duplicates = []
    for ident, group in dup.items():
        group.sort(key=lambda r: (r.task_version, str(r.created), r.key or ""))
        cells[ident] = group[-1]
        if len(group) > 1:
            duplicates.append({"method": ident[0], "task": ident[1], "seed": ident[2], "used": group[-1].key,
                               "ignored": [g.key for g in group[:-1]]})
    if duplicates:   # one line: after a key change every recomputed cell has an older twin
        first = duplicates[0]
        warnings.append(f"{len(duplicates)} (method, task, seed) with several cells (e.g. {first['method']} × "
                        f"{first['task']} × seed {first['seed']}): using the newest of each (listed in meta.json); "
                        "`python -m benchmark gc` moves cells computed under older keys out of the store")
    return Index(world, cells, warnings, duplicates)


def cell_value(index: Index, method: str, task: str, directions: Sequence[str], metric: str | None, seed: int,
               missing: list[dict] | None = None, used: dict | None = None) -> float | None:
    """Mean over `directions` of `metric` (None = the result's main metric) in one stored cell, or None
    (appending why to `missing`; recording the result in `used`)."""
    result = index.get(method, task, seed)
    if result is None:
        if missing is not None:
            missing.append({"method": method, "task": task, "seed": int(seed), "reason": "no result"})
        return None
    name = result.metric_name(metric)
    values = []
    for d in directions:
        v = result.score(d, metric)
        if v is None:
            if missing is not None:
                missing.append({"method": method, "task": task, "seed": int(seed),
                                "reason": f"'{d}' has no metric '{name}'", "key": result.key})
            return None
        values.append(v)
    if used is not None:
        used[result.key] = result
    return sum(values) / len(values)


def seed_values(index: Index, method: str, coords: Sequence[tuple[str, Sequence[str], str | None]],
                seeds: Iterable[int] | None = None, missing: list[dict] | None = None,
                used: dict | None = None) -> dict[int, float]:
    """Per seed, the mean over coords (task, directions, metric) of `cell_value`; only seeds where every
    coord is present. `seeds` None = every seed the store holds for this method."""
    seeds = sorted(seeds) if seeds is not None else index.seeds(method)
    out = {}
    for s in seeds:
        vals = [cell_value(index, method, t, d, m, s, missing, used) for t, d, m in coords]
        if vals and all(v is not None for v in vals):
            out[s] = sum(vals) / len(vals)
    return out
