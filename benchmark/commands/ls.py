"""`ls methods|tasks|refiners|grids [-v]`: the registry from its YAML cards (torch only for `-v`, which shows
what each null default resolves to under the default scale preset)."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .. import registry
from ..ui import console

KINDS = {"methods": "method", "tasks": "task", "refiners": "refiner"}


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list registered methods, tasks, refiners or grids")
    p.add_argument("what", choices=[*KINDS, "grids"], nargs="?", default="methods")
    p.add_argument("-v", "--verbose", action="store_true", help="show every option with default and choices")
    p.add_argument("--all", action="store_true", help="include hidden test-only entries")
    p.set_defaults(func=main)


def _resolved(entry: registry.Entry) -> dict[str, dict]:
    """{scale: settings} -- what the null defaults resolve to under each scale preset, for entries whose code
    resolves presets (the cards' `scales:`, a family's over `methods/_pretrained.yaml`), resolved by the method
    itself so `ls -v` shows what a run uses (the default scale first)."""
    if entry.kind != "method":
        return {}
    resolve = getattr(entry.load(), "settings", None)
    if resolve is None:
        return {}
    scale = entry.options.get("scale")
    scales = [scale.default, *(c for c in scale.choices or () if c != scale.default)] if scale else [None]
    return {s: resolve({**entry.defaults(), **({"scale": s} if s else {})}) for s in scales}


def _preset_text(name: str, resolved: dict[str, dict]) -> str:
    values = [(scale, settings.get(name)) for scale, settings in resolved.items()]
    if not values or values[0][1] is None:
        return ""
    others = [f"{scale}: {value!r}" for scale, value in values[1:] if value != values[0][1]]
    return f" → {values[0][1]!r}" + (f" ({', '.join(others)})" if others else "")


def _option_text(entry: registry.Entry) -> str:
    lines = []
    resolved = _resolved(entry)
    for name, opt in entry.options.items():
        choice = f" ∈ {{{', '.join(map(str, opt.choices))}}}" if opt.choices else ""
        flag = " (inference only)" if opt.inference_only else ""
        preset = _preset_text(name, resolved) if opt.default is None else ""
        lines.append(escape(f"{name}={opt.default!r}{preset}{choice}{flag}")
                     + (f"  [dim]{escape(opt.help)}[/]" if opt.help else ""))
    for name, value in entry.facts.items():     # release facts the implementation reads
        lines.append(escape(f"facts.{name} = {value}"))
    return "\n".join(lines)


def main(args) -> int:
    if args.what == "grids":
        from .grid import GRID_DIR
        table = Table("grid", "title", title="grids (benchmark/grids)")
        import yaml
        for path in sorted(Path(GRID_DIR).glob("*.yaml")):
            data = yaml.safe_load(path.read_text()) or {}
            table.add_row(path.stem, str(data.get("title", "")))
        console.print(table)
        return 0
    kind = KINDS[args.what]
    table = Table(title=f"{args.what} ({len(registry.entries(kind))})")
    table.add_column("name", style="bold")
    table.add_column("v", justify="right")
    if kind == "method":
        table.add_column("discrete")
    table.add_column("summary")
    if args.verbose:
        table.add_column("options (default ∈ choices)")
    for name, entry in sorted(registry.entries(kind).items()):
        if entry.hidden and not args.all:
            continue
        row = [name, str(entry.version)]
        if kind == "method":
            row.append("yes" if entry.discrete else "no")
        row.append(escape(entry.summary))
        if args.verbose:
            row.append(_option_text(entry))
        table.add_row(*row)
    console.print(table)
    return 0
