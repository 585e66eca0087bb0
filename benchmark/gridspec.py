"""Grid files (`benchmark/grids/NAME.yaml` or a path): found, read and type-checked (`grid` plans their cells).

Harness layer: `grid` runs what this loads, `table` / `claims` / the figures read the same files for their
`table:` sections, so none of them imports the CLI.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from . import registry
from . import spec as specs
from .contracts import UserError

GRID_DIR = Path(__file__).resolve().parent / "grids"
PROFILES = ("smoke", "default", "paper")


def find_grid(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"grid file '{name}' does not exist")
        return path
    candidate = GRID_DIR / f"{name}.yaml"
    if not candidate.is_file():
        import difflib
        known = sorted(p.stem for p in GRID_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown grid '{name}'{hint} (known: {', '.join(known) or 'none'})")
    return candidate


GRID_KEYS = {"name", "title", "description", "notes", "profile", "seeds", "methods", "tasks", "blocks", "table",
             "method_options"}
BLOCK_KEYS = {"methods", "tasks", "note"}
MAX_GRID_BYTES = 1 << 20
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def _spec_list(value, where: str, what: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{what}' must be a non-empty list of spec strings, got {value!r}"[:300])
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"{where}: '{what}' entries must be spec strings, got {item!r}"[:300])
        specs._check_text(item, what[:-1])   # resolved against the registry when the grid is planned
    return value


def _unknown(keys, known: set, where: str) -> None:
    extra = sorted(str(k) for k in keys if k not in known)
    if extra:
        import difflib
        close = difflib.get_close_matches(extra[0], sorted(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{where}: unknown key '{extra[0]}'{hint} (known: {', '.join(sorted(known))})")


def load_grid(path: Path) -> dict:
    """Read and type-check a grid file: every field, every spec and every seed, before anything is planned."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the grid file: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_GRID_BYTES:
        raise UserError(f"{path}: grid file of {len(raw)} bytes (at most {MAX_GRID_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
    try:
        grid = registry.load_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"bad YAML in {path}: {str(exc).splitlines()[0]}") from None
    except (ValueError, RecursionError) as exc:   # e.g. an integer beyond Python's digit limit
        raise UserError(f"bad YAML in {path}: {type(exc).__name__}: {str(exc)[:120]}") from None
    if not isinstance(grid, dict):
        raise UserError(f"{path}: a grid must be a mapping with 'methods', 'tasks' (and optional 'seeds', 'blocks')")
    _unknown(grid, GRID_KEYS, str(path))
    for key in ("name", "title", "description", "notes", "profile"):
        if key in grid and not isinstance(grid[key], str):
            raise UserError(f"{path}: '{key}' must be a string, got {grid[key]!r}"[:300])
    if "name" in grid and not _TABLE_NAME.match(grid["name"]):
        raise UserError(f"{path}: name {grid['name']!r} must be letters, digits, '_', '-' or '.' (at most 100, "
                        f"no '/'), since it names the table files"[:300])
    if "profile" in grid and grid["profile"] not in PROFILES:
        raise UserError(f"{path}: profile must be one of {', '.join(PROFILES)}, got {grid['profile']!r}"[:300])
    if "seeds" in grid:
        grid["seeds"] = specs.check_seeds(grid["seeds"], f"{path}: seeds")
    if "table" in grid and not isinstance(grid["table"], dict):
        raise UserError(f"{path}: 'table' must be a mapping, got {grid['table']!r}"[:300])
    blocks = []
    if "methods" in grid or "tasks" in grid:
        blocks.append({"methods": grid.get("methods"), "tasks": grid.get("tasks")})
    extra = grid.get("blocks", [])
    if not isinstance(extra, list):
        raise UserError(f"{path}: 'blocks' must be a list of {{methods: [...], tasks: [...]}}, got {extra!r}"[:300])
    blocks += extra
    if not blocks:
        raise UserError(f"{path}: the grid has no cells (give 'methods' and 'tasks', or 'blocks')")
    for i, block in enumerate(blocks):
        where = f"{path}: block {i}" if i or "methods" not in grid and "tasks" not in grid else str(path)
        if not isinstance(block, dict):
            raise UserError(f"{where}: expected a mapping with 'methods' and 'tasks', got {block!r}"[:300])
        _unknown(block, BLOCK_KEYS, where)
        for what in ("methods", "tasks"):
            if what not in block or block[what] is None:
                raise UserError(f"{where}: missing '{what}' (a non-empty list of specs)")
            _spec_list(block[what], where, what)
    grid["_blocks"] = blocks
    if "method_options" in grid:
        _apply_method_options(grid, str(path))
    return grid


def _apply_method_options(grid: dict, where: str) -> None:
    """`method_options: {epochs: 16}` puts those options on every method spec of the grid (blocks and table rows)
    whose base method has them and does not set them itself — so a pinned budget is stated once, and the specs
    (hence cell keys) are exactly those of writing `fccid@...,epochs=16` on every line."""
    options = grid["method_options"]
    if not isinstance(options, dict) or not options:
        raise UserError(f"{where}: 'method_options' must be a non-empty mapping of option: value, got {options!r}"[:300])
    for key, value in options.items():
        if not isinstance(key, str) or not specs._NAME.match(key):
            raise UserError(f"{where}: method_options: bad option name {key!r}"[:300])
        if isinstance(value, dict):
            raise UserError(f"{where}: method_options.{key} must be a scalar or a list, got {value!r}"[:300])
    rewrite_methods(grid, lambda m: specs.with_base_options(m, options))


def rewrite_methods(grid: dict, rewrite) -> None:
    """Every method spec of a loaded grid (blocks and table rows) through `rewrite` (spec text -> spec text):
    `method_options`, and `grid --profile smoke` (`spec.at_smoke_scale`)."""
    for block in grid["_blocks"]:
        block["methods"] = [rewrite(m) for m in block["methods"]]
    if "methods" in grid:      # the top-level product is the first block: the same, rewritten list
        grid["methods"] = grid["_blocks"][0]["methods"]
    table = grid.get("table")
    if isinstance(table, dict):
        if isinstance(table.get("method"), str):
            table["method"] = rewrite(table["method"])
        for row in table.get("rows") or []:
            if isinstance(row, dict) and isinstance(row.get("method"), str):
                row["method"] = rewrite(row["method"])


def table_names() -> list[str]:
    """Every grid under benchmark/grids with a `table:` section (what `table all` builds)."""
    return [p.stem for p in sorted(GRID_DIR.glob("*.yaml"))
            if isinstance(d := registry.load_yaml(p.read_text()), dict) and d.get("table")]
