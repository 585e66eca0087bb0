"""`claims` for a narrow terminal: each claim and each comparison as wrapped lines instead of an 8-column table,
whose comparison column would have to cut specs (`dcid@epochs=16,quantizer=… > dcid@epochs=16` leaves RVQ-2/3/4
indistinguishable). Specs are printed whole; a line that is too long wraps, never ends in an ellipsis."""
from __future__ import annotations

from .claims import ALPHA, FAILS, HOLDS, INCONCLUSIVE, MARGIN, Claim, link_row
from .tables.index import Index

NARROW = 100   # below this many terminal columns `claims` prints this layout
COLOUR = {HOLDS: "green", FAILS: "red", INCONCLUSIVE: "yellow"}


def to_rich(claims: list[Claim], index: Index):
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text
    lines = [Text(f"Claims (world {index.world or 'none found'}; paired t over seeds, α={ALPHA}, δ={MARGIN:g})",
                  style="italic")]
    for c in claims:
        lines.append(Text(""))
        head = Text(f"{c.number}. ", style="bold")
        head.append(c.statement, style="bold")
        head.append(" — ")
        head.append(c.verdict, style=f"bold {COLOUR[c.verdict]}")
        lines.append(head)
        for link in c.links:
            r = link_row(link)
            lines.append(Padding(Text(f"· {r[0]}", overflow="fold"), (0, 0, 0, 2)))   # wrapped lines keep the indent
            detail = Text(r[8], style=COLOUR[link.verdict])
            detail.append(f"; {r[1]}: Δ {r[4]}, d_z {r[5]}, p {r[6]}, n {r[7]}", style="default")
            lines.append(Padding(detail, (0, 0, 0, 4)))
        if c.note:
            lines.append(Padding(Text(c.note, style="dim"), (0, 0, 0, 2)))
    return Group(*lines)
