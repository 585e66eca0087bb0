"""`data synth | info | import {ave,cmg,avvp}`: make, inspect and convert native feature files."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..contracts import UserError
from ..ui import console, err_console
from ._common import PROFILES, cli_int


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="synthesize, inspect or import native feature files")
    dsub = p.add_subparsers(dest="data_command", metavar="{synth,info,import}", parser_class=type(p))
    dsub.required = True

    s = dsub.add_parser("synth", help="write a synthetic world (one .h5 per dataset)")
    s.add_argument("--profile", choices=PROFILES, default="default")
    s.add_argument("--seed", type=cli_int, default=0)
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--only", metavar="NAMES", help="comma list of datasets (default: all), e.g. pretrain,ave")
    s.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override a generator knob (repeatable), e.g. --set scene_sigma=0")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=synth)

    i = dsub.add_parser("info", help="validate and describe a native file (or every file of a world folder)")
    i.add_argument("path", metavar="FILE|DIR")
    i.add_argument("--full", action="store_true", help="check every clip for NaN/Inf (opening samples 32 clips)")
    i.set_defaults(func=info)

    imp = dsub.add_parser("import", help="convert AVE-ECCV18 / CMG / AVVP layouts to a native file")
    isub = imp.add_subparsers(dest="layout", metavar="{ave,cmg,avvp}", parser_class=type(p))
    isub.required = True
    a = isub.add_parser("ave", help="AVE-ECCV18 data folder (audio_feature.h5, visual_feature.h5, labels.h5, "
                                    "*_order.h5)")
    a.add_argument("root", metavar="DIR")
    a.add_argument("--classes", metavar="FILE", help="class names, one per line (default: from Annotations.txt)")
    _common_import(a)
    a.set_defaults(func=import_ave)
    c = isub.add_parser("cmg", help="CMG repo layout: CSV category,video_id[,split] + zipped per-clip pickles")
    c.add_argument("--csv", required=True, metavar="FILE")
    c.add_argument("--text", metavar="DIR|ZIP", help="text features, same layout as audio/video")
    c.add_argument("--name", default="cmg", help="dataset name written into the file (e.g. pretrain, ucf, vgg)")
    c.add_argument("--classes", metavar="FILE", help="class names, one per line (default: sorted categories)")
    _common_import(c, zips=True)
    c.set_defaults(func=import_cmg)
    v = isub.add_parser("avvp", help="AVVP tab-separated annotation CSVs + zipped per-clip pickles")
    v.add_argument("--audio-csv", required=True, metavar="FILE")
    v.add_argument("--visual-csv", required=True, metavar="FILE")
    v.add_argument("--classes", metavar="FILE", help="class names, one per line (default: sorted labels)")
    _common_import(v, zips=True)
    v.set_defaults(func=import_avvp)


def _common_import(p, zips: bool = False) -> None:
    p.add_argument("--out", required=True, metavar="FILE", help="native .h5 to write")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--video-dtype", choices=("float32", "float16"), default="float32",
                   help="storage dtype of video (reading always gives float32)")
    p.add_argument("-q", "--quiet", action="store_true")
    if zips:
        p.add_argument("--audio", metavar="DIR|ZIP", help="folder of <id>.zip (one pickled array each) or one .zip")
        p.add_argument("--video", metavar="DIR|ZIP", help="folder of <id>.zip (one pickled array each) or one .zip")
        p.add_argument("--seconds", type=cli_int, default=10, help="pad (repeat last row) / truncate clips to T")
        p.add_argument("--skip-missing", action="store_true", help="drop clips without features instead of failing")
        p.add_argument("--split-fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar="F",
                       help="train/val/test fractions when the input has no split")
        p.add_argument("--split-seed", type=cli_int, default=0)


@contextlib.contextmanager
def _progress(quiet: bool):
    """A `progress(iterable, description, total)` callback drawing rich bars on a terminal's stderr.

    The display starts with the first bar, so input errors found before any work print only their one line."""
    if quiet or not err_console.is_terminal:
        yield None
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)

    def track(iterable, description="", total=None):
        if not bars.live.is_started:
            bars.start()
        return bars.track(iterable, description=description, total=total)
    try:
        yield track
    finally:
        if bars.live.is_started:
            bars.stop()


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KNOB=VALUE, got '{item}'")
        if value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                raise UserError(f"--set {key}: bad list '{value}'") from None
        out[key.strip()] = value
    return out


# --------------------------------------------------------------------------- commands
def synth(args) -> int:
    from tasks.data import synthesize

    from ..store import sweep_tmp
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only is not None else None
    if only == []:
        raise UserError(f"--only {args.only!r} names no dataset (a comma list such as pretrain,ave)")
    sweep_tmp(Path(args.out), any_writer=False)   # temp files of a killed synth (dead PIDs only)
    t0 = time.perf_counter()
    with _progress(args.quiet) as progress:
        out = synthesize(args.profile, args.seed, args.out, progress=progress, only=only, **_parse_sets(args.set))
    seconds = time.perf_counter() - t0
    if not args.quiet:
        _print_world(out)
    err_console.print(f"wrote {args.profile} world (seed {args.seed}) to {out} in {seconds:.1f}s")
    return 0


def info(args) -> int:
    from tasks.data import FeatureFile
    path = Path(args.path)
    if path.is_dir():
        _print_world(path, full=args.full)
        return 0
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    with FeatureFile(path) as ff, _progress(False) as progress:
        if args.full:
            ff.scan(progress)
        _print_file(ff)
    return 0


def _print_world(root: Path, full: bool = False) -> None:
    from tasks.data import open_world
    world = open_world(root)
    names = world.names()
    if not names:
        raise UserError(f"{root}: no .h5 files")
    if full:
        with _progress(False) as progress:
            for name in names:
                world.open(name).scan(progress)
    table = Table(title=f"world {root}", title_justify="left")
    for col in ("file", "N", "features per clip", "classes", "labels / pairs", "splits", "fingerprint"):
        table.add_column(col, overflow="fold", no_wrap=col in ("file", "fingerprint"))
    for name in names:
        ff = world.open(name)
        ns = "/".join(str(n) for n in dict.fromkeys(ff.n(m) for m in ff.modalities))
        feats = ", ".join(f"{m} {'×'.join(map(str, ff.feature_shape(m)))}"
                          + ("" if ff.stored_dtype(m) == "float32" else f" ({ff.stored_dtype(m)})")
                          for m in ff.modalities)
        splits = "/".join(str(len(ff.split(s))) for s in ff.split_names)
        labels = ", ".join((*ff.label_names, *ff.pair_names))
        table.add_row(name, ns, feats, str(len(ff.classes)), labels, splits, ff.fingerprint)
    console.print(table)
    console.print(f"world fingerprint: {world.fingerprint(names)}")
    world.close()


def _print_file(ff) -> None:
    attrs = ff.attrs
    head = Table.grid(padding=(0, 2))
    head.add_row("file", str(ff.path))
    head.add_row("dataset", ff.dataset)
    head.add_row("format_version", str(attrs.get("format_version")))
    head.add_row("fingerprint", ff.fingerprint)
    classes = ff.classes
    shown = ", ".join(classes[:8]) + (f", … ({len(classes)} in all)" if len(classes) > 8 else "")
    head.add_row("classes", f"{len(classes)}: {shown}" if classes else "0")
    for key in ("source", "split_note", "label_note"):
        if key in attrs:
            head.add_row(key, str(attrs[key]))
    console.print(head)
    arrays = Table(title="arrays", title_justify="left")
    for col in ("key", "shape", "dtype", "note"):
        arrays.add_column(col)
    for m in ff.modalities:
        arrays.add_row(m, str(list(ff.shape(m))), ff.stored_dtype(m), "read as float32")
    for name in ff.label_names:
        data = ff.h5[f"labels/{name}"]
        note = "class per clip" if name == "clip" else "per second, background last"
        arrays.add_row(f"labels/{name}", str(list(data.shape)), str(data.dtype), note)
    for name in ff.split_names:
        arrays.add_row(f"split/{name}", f"[{len(ff.split(name))}]", "int64", "")
    for name in ff.pair_names:
        arrays.add_row(f"pairs/{name}", str(list(ff.h5[f'pairs/{name}'].shape)), "int64", "")
    console.print(arrays)
    gen = attrs.get("generator")
    if isinstance(gen, dict):
        console.print(f"[bold]generator[/] {gen.get('generator')} v{gen.get('generator_version')}, seed "
                      f"{gen.get('seed')}, events: {gen.get('events')}")
        console.print("  ".join(f"{k}={v}" for k, v in gen.get("knobs", {}).items()), highlight=False)


def import_ave(args) -> int:
    from tasks.data.importers import import_ave as run
    _check_out(args)
    with _progress(args.quiet) as progress:
        out = run(args.root, args.out, classes=args.classes, video_dtype=args.video_dtype, progress=progress)
    return _done(out, args.quiet)


def import_cmg(args) -> int:
    from tasks.data.importers import import_cmg as run
    _check_out(args)
    with _progress(args.quiet) as progress:
        out = run(args.csv, args.out, audio=args.audio, video=args.video, text=args.text, name=args.name,
                  classes=args.classes, seconds=args.seconds, skip_missing=args.skip_missing,
                  split_fractions=args.split_fractions, split_seed=args.split_seed, video_dtype=args.video_dtype,
                  progress=progress)
    return _done(out, args.quiet)


def import_avvp(args) -> int:
    from tasks.data.importers import import_avvp as run
    _check_out(args)
    with _progress(args.quiet) as progress:
        out = run(args.audio_csv, args.visual_csv, args.out, audio=args.audio, video=args.video,
                  classes=args.classes, seconds=args.seconds, skip_missing=args.skip_missing,
                  split_fractions=args.split_fractions, split_seed=args.split_seed, video_dtype=args.video_dtype,
                  progress=progress)
    return _done(out, args.quiet)


def _check_out(args) -> None:
    """An import rewrites its --out whole; replacing someone's file silently would lose it. Temp files of a
    killed import beside it (dead PIDs only) are swept."""
    from ..outputs import check_file
    from ..store import sweep_tmp
    out = check_file(args.out, "--out")
    if out.exists() and not args.force:
        raise UserError(f"--out '{out}' already exists; pass --force to replace it")
    sweep_tmp(out.parent, any_writer=False)


def _done(out: Path, quiet: bool) -> int:
    from tasks.data import FeatureFile
    if not quiet:
        with FeatureFile(out) as ff:
            _print_file(ff)
    err_console.print(f"wrote {out}")
    return 0
