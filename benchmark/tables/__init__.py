"""Paper tables as a pure function of the result store: a grid's `table:` section -> CSV / LaTeX / Markdown / rich.

By job: `names` (canonical specs), `layout` (the `table:` section -> TableSpec), `index` (the store keyed by
cell; what `claims` reads), `build` (per-cell statistics), `text` (display strings, caption), `render` (the
formats), `provenance` (meta.json sidecar, writing). This package re-exports their public names.

Nothing here trains. A table is a grid of (row, column) cells; each cell resolves to one
(method, task, directions, metric) and, per seed, to the mean over its directions of that metric in the stored
result (`result.json`). Over seeds a cell shows mean ± 95 % t-interval (`stats.summarize`); n = 1 the mean alone.
Seeds default to those the store holds for the table's cells. Bold marks a column's best only where a paired
t-test over seeds puts it ahead of the runner-up (`build.significantly_ahead`).
Cells the store lacks are *listed* (method, task, seed, why), never dropped silently.

The `table:` section of a grid (everything optional except `rows` and `columns`):

    table:
      method: vqvae              # default method for rows that give none
      task: toc_recon            # default task for columns that give none
      metric: null               # default metric; null = each result's `main_metric`
      decimals: 2                # digits shown (a column may override)
      avg: true                  # add an "Avg." column: per seed the mean of the row's columns, then over seeds
      bold: columns              # columns = a column's best mean in bold where significantly ahead | none
      paper_source: "..."        # where the paper numbers come from (caption)
      row_header: Method         # heading of the label column
      note: "..."                # appended to the caption (e.g. why an ablation uses fewer seeds)
      plot: {kind: size_curve, x_label: "codebook size"}   # report_plots draws rows with `x` as a curve
      columns:
        - {task: ave, direction: V->A, group: AVE}         # direction: one label or a list (averaged)
        - {task: retrieval, direction: [V->T, T->V], metric: R@1, group: "V<->T", label: R@1}
      rows:
        - {method: codis, label: CODIS, paper: [36.8, ..., 39.90]}   # paper: one per column (+ Avg last)
        - {method: dcid, label: "m->m", mm: true, exclude: [ave_avvp]}   # mm: X->Y read as X->X
        - {direction: mask87.5, label: "87.5"}             # a row may fix the direction (and `task`) instead (t3)
        - {method: fccid+toc, sep: true}                   # sep: a rule above this row
        - {method: fccid@codebook_size=256, x: 256}        # x: position on a curve (plots)

Method and task strings are matched to results through their canonical form (`spec.parse_method(...).canonical()`),
so `dcid@quantizer=vq` finds the cells stored as `dcid`.
"""
from ..gridspec import table_names
from .build import FLOORS, BuiltTable, CellStats, Display, build, significantly_ahead
from .index import Index, build_index, cell_value, seed_values
from .layout import Column, Row, TableSpec, grid_cells, load_table, parse_table, table_cells
from .names import canonical_method, canonical_task, mm_direction, task_label
from .provenance import RENDER, meta, write
from .render import FORMATS, SUFFIX, latex_escape, pretty_label, to_latex, to_long_csv, to_markdown, to_rich
from .text import (BELOW_FLOOR_MARK, SMOKE_BANNER, UNCONVERGED_MARK, CellText, caption, cell_texts, floor_text,
                   header_labels, is_smoke, missing_lines, smoke_banner)

__all__ = ["BELOW_FLOOR_MARK", "FLOORS", "SMOKE_BANNER", "BuiltTable", "CellStats", "CellText", "Column", "Display", "FORMATS", "Index", "RENDER", "Row", "SUFFIX",
           "TableSpec", "UNCONVERGED_MARK", "build", "build_index", "canonical_method", "canonical_task", "caption",
           "cell_texts", "cell_value", "floor_text", "grid_cells", "header_labels", "is_smoke", "latex_escape", "load_table",
           "meta", "missing_lines", "mm_direction", "parse_table", "pretty_label", "seed_values", "significantly_ahead",
           "smoke_banner", "table_cells", "task_label", "table_names", "to_latex", "to_long_csv", "to_markdown", "to_rich", "write"]
