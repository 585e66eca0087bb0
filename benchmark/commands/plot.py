"""`plot <figure> ...`: draw one figure as a PNG. Each figure is a subcommand registered in FIGURES.

    python -m benchmark plot toc-heatmap --codebook codebook.pt --q 128 --out toc.png   (seed 000 Fig. 2)
"""
from __future__ import annotations

import re
from pathlib import Path

from ..contracts import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="draw a figure (PNG)")
    figures = p.add_subparsers(dest="figure", metavar="{" + ",".join(FIGURES) + "}", parser_class=type(p))
    for register in FIGURES.values():
        register(figures)
    p.set_defaults(func=_missing_figure)


def _missing_figure(args) -> int:
    from ..__main__ import choose
    return choose("a figure", FIGURES)


# --------------------------------------------------------------------------- toc-heatmap
# entries of a model's state dict that are codebooks (quantizer.embedding, layer1.quantizer.embedding,
# chunk_quantizers.0.embedding, CODIS's prototypes)
CODEBOOK_NAME = re.compile(r"(^|\.)(embedding|prototypes|codebooks?)(\.\d+)?$")


def load_codebook(path: str, key: str | None = None):
    """(entry name, codebook [L, D]) from .npy, .npz or a torch file (.pt/.pth: a tensor or a dict of tensors).

    `key` picks an entry; without it a file's only 2-D array is used, or else its first codebook-named one, so a
    pretraining's model.pt works as it is."""
    import numpy as np
    from .. import bounds
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--codebook '{path}' does not exist")
    if file.stat().st_size > bounds.MEMORY_FRACTION * bounds.available_bytes():   # read whole below
        raise UserError(f"--codebook '{path}' is {bounds.gib(file.stat().st_size)}, more than the memory available")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            found = {None: np.load(file, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(file, allow_pickle=False) as data:
                found = {k: data[k] for k in data.files}
        elif suffix in (".pt", ".pth"):
            import torch
            obj = torch.load(file, map_location="cpu", weights_only=True)
            found = ({k: v for k, v in obj.items() if hasattr(v, "shape")} if isinstance(obj, dict) else {None: obj})
        else:
            raise UserError(f"--codebook '{path}': expected a .npy, .npz, .pt or .pth file, "
                            f"got '{suffix or 'no suffix'}'")
    except UserError:
        raise
    except Exception as exc:  # unreadable or corrupt file: a user error, not a traceback
        raise UserError(f"--codebook '{path}' could not be read: {type(exc).__name__}: {exc}") from exc
    if key is not None:
        if key not in found:
            raise UserError(f"--codebook '{path}' has no entry '{key}'; "
                            f"entries: {', '.join(map(str, found)) or '(none)'}")
        array = found[key]
    else:
        matrices = {k: v for k, v in found.items() if len(getattr(v, "shape", ())) == 2}
        books = [k for k in matrices if k is not None and CODEBOOK_NAME.search(str(k))]
        if len(matrices) == 1:
            (key, array), = matrices.items()
        elif books:   # a model's state dict: its (first) codebook, not the encoder weights
            key, array = books[0], matrices[books[0]]
        else:
            names = [str(k) for k in matrices]
            shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
            raise UserError(f"--codebook '{path}' holds {len(matrices)} 2-D arrays ({shown or 'none'}) and none "
                            f"is named like a codebook (…embedding, …prototypes, …codebook); name one with --key")
    array = np.asarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array, dtype=np.float64)
    key = None if key is None else str(key)
    if array.ndim != 2 or array.shape[0] < 2:
        raise UserError(f"--codebook '{path}': expected a 2-D [L, D] codebook with L >= 2, got shape {array.shape}")
    top = bounds.limit("heatmap_codes", bounds.FILE_BOUNDS)
    if array.shape[0] > top:
        raise UserError(f"--codebook '{path}': {array.shape[0]} codes, at most {top} "
                        f"({bounds.FILE_BOUNDS['heatmap_codes'].why})")
    if not np.isfinite(array).all():
        raise UserError(f"--codebook '{path}' contains NaN or infinite values")
    return key, array


def _toc_heatmap_parser(figures) -> None:
    p = figures.add_parser("toc-heatmap", help="codebook cosine similarity before / after TOC (seed 000 Fig. 2)")
    p.add_argument("--codebook", required=True, metavar="FILE", help="[L, D] codebook: .npy, .npz, .pt or .pth (e.g. a pretraining's model/model.pt: its "
                        "codebook is found by name)")
    p.add_argument("--key", help="entry to use when the file holds several arrays")
    p.add_argument("--q", type=int, default=None, help="dims kept by TOC (default: half the width, 128 of 256)")
    p.add_argument("--lam", type=float, default=0.3, help="λ of Eq. 17 (default 0.3)")
    p.add_argument("--criterion", choices=("both", "sim", "var"), default="both")
    p.add_argument("--max", type=int, default=1, help="max:min split (released scripts), default 1:0")
    p.add_argument("--min", type=int, default=0)
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.set_defaults(func=toc_heatmap_main)


def toc_heatmap_main(args) -> int:
    from .. import registry
    from ..plots import toc_heatmap
    from ..ui import console
    cfg = {"q": args.q, "lam": args.lam, "criterion": args.criterion, "max": args.max, "min": args.min}
    entry = registry.get("refiner", "toc")
    entry.validate(cfg)                                  # the options, before the codebook file is read
    key, codebook = load_codebook(args.codebook, args.key)
    kept = entry.load().kept_dims(codebook, cfg)
    summary = toc_heatmap(codebook, kept, args.out,
                          title=f"TOC ({args.criterion}, λ={args.lam:g}, max:min={args.max}:{args.min})")
    source = f" ('{key}')" if key and not args.key else ""
    console.print(f"wrote {summary['path']}{source}: {codebook.shape[0]} codes, kept {len(kept)} of {codebook.shape[1]} "
                  f"dims; mean off-diagonal cos {summary['mean_cos_before']:.3f} -> {summary['mean_cos_after']:.3f} "
                  f"(|cos| {summary['mean_abs_cos_before']:.3f} -> {summary['mean_abs_cos_after']:.3f})",
                  soft_wrap=True)
    return 0


def _report_parser(figures) -> None:
    p = figures.add_parser("report", help="every report figure the result store supports (activation, "
                                          "codebook-size curves, TOC heatmaps)")
    p.add_argument("--results", default="results", help="result store (default results/)")
    p.add_argument("--out", default=None, help="output folder (default <results>/figures)")
    p.add_argument("--world", default=None, help="world label when the store holds several")
    p.set_defaults(func=report_main)


def report_main(args) -> int:
    from ..report_plots import make_report_figures
    from ..ui import console
    from ..api import read_store
    found = read_store(args.results, args.world)   # the store and the world must exist (a UserError otherwise)
    from ..outputs import check_dir
    check_dir(args.out or Path(args.results) / "figures", "--out")
    written, notes = make_report_figures(args.results, args.out, args.world, results=found)
    for path in written:
        console.print(f"wrote {path}")
    for note in notes:
        console.print(f"[yellow]skipped[/] {note}")
    return 0


FIGURES = {"toc-heatmap": _toc_heatmap_parser, "report": _report_parser}
