"""Convert the layouts users hold into native files (docs/ORIGINAL_CODE.md §1.2), streaming clip blocks.

- AVE-ECCV18: `audio_feature.h5`, `visual_feature.h5`, `labels.h5` (key `avadataset`), `{train,val,test}_order.h5`
  (key `order`), optional `Annotations.txt` (`Category&YouTubeID&Quality&Start&End`) for class names.
- CMG repo: a CSV `category,video_id[,split]` and, per modality, a folder of `<video_id>.zip` each holding one
  pickled array (or one `.zip` holding `<video_id>.pkl` members); arrays padded/truncated to T seconds.
- AVVP: tab-separated `filename onset offset event_labels` CSVs (audio and visual annotations; comma lists or one
  event per row; integer seconds) + per-clip zips as in the CMG layout (looked up by filename or its first 11 chars).

Every input problem is a `UserError` naming file, key, expected vs found; the output is written to a temp file
and only renamed into place when everything (including a full NaN/Inf scan) passed.
"""
from __future__ import annotations

import csv
import io
import pickle
import zipfile
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from benchmark.contracts import UserError

from .native import SPLITS, NativeWriter

BLOCK = 256                 # at most this many clips per write block ...
BLOCK_BYTES = 64 * 2**20    # ... and at most this much float32 data per modality in memory
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)

Rows = Callable[[int, int], np.ndarray]    # (start, stop) -> float array [stop-start, T, ...]


# --------------------------------------------------------------------------- shared helpers
def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file (truncated or corrupt?): "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _h5_key(f: h5py.File, path: Path, key: str) -> h5py.Dataset:
    """The dataset `key`, stored in this file (external or virtual storage would copy other local files into
    the features) and of a shape the native format can hold."""
    if key not in f:
        raise UserError(f"{path}: missing key '{key}' (found: {', '.join(f.keys()) or 'nothing'})")
    ds = f[key]
    if isinstance(ds, h5py.Dataset) and (ds.is_virtual or ds.external):
        raise UserError(f"{path}: {key}: {'virtual' if ds.is_virtual else 'external'} storage (data kept in other "
                        f"files) is not accepted; copy the data into this file")
    return ds


def fix_length(x: np.ndarray, seconds: int) -> np.ndarray:
    """[T', ...] -> [seconds, ...]: truncate, or pad by repeating the last row (as the original loaders do)."""
    if len(x) >= seconds:
        return x[:seconds]
    if len(x) == 0:
        raise ValueError("empty feature array")
    return np.concatenate([x, np.repeat(x[-1:], seconds - len(x), axis=0)])


MAX_SECONDS = 3600


def check_import_args(seconds: int, split_fractions: Sequence[float] | None = None, out=None) -> None:
    """What can be refused before any input file is read."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_SECONDS:
        raise UserError(f"--seconds must be an integer in [1, {MAX_SECONDS}], got {seconds!r}")
    if split_fractions is not None:
        fractions = list(split_fractions)
        if (len(fractions) != 3 or not all(np.isfinite(fractions)) or min(fractions) < 0
                or abs(sum(fractions) - 1) > 1e-6):
            raise UserError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise UserError(f"--out '{out}' is a directory (expected the .h5 file to write)")
        if out.parent.exists() and not out.parent.is_dir():
            raise UserError(f"--out '{out}': '{out.parent}' is not a directory")


def read_names(path: str | Path) -> list[str]:
    """One class name per line (AVE/AVVP `*_Categories.txt`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: class list not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate class names")
    return names


def seeded_splits(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(fractions[0] * n))
    b = a + int(round(fractions[1] * n))
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def write_native(out: Path, dataset: str, classes: list[str], n: int, sources: dict[str, tuple[Rows, tuple, str]],
                 labels: dict[str, np.ndarray], splits: dict[str, np.ndarray], attrs: dict,
                 progress=None) -> Path:
    """Stream `sources` ({modality: (rows(start, stop), per-clip shape, where)}) into a native file.

    Each block is checked for NaN/Inf before it is written; any problem aborts and nothing is published."""
    from benchmark import bounds
    for m, (_, shape, where) in sources.items():   # before anything is written: sizes the format can hold
        if n < 1 or not shape or min(shape) < 1:
            raise UserError(f"{where}: expected clips with non-empty features, found shape {[n, *shape]}")
        bounds.check_declared(where, m, (n, *shape), 4)
    ids = attrs.pop("ids", None)
    block_rows = min([BLOCK] + [max(1, BLOCK_BYTES // (4 * int(np.prod(s)))) for _, s, _ in sources.values()])
    with NativeWriter(out, dataset=dataset, classes=classes, **attrs) as w:
        for m, (_, shape, _) in sources.items():
            w.features(m, (n, *shape), attrs.get("video_dtype", "float32") if m == "video" else "float32")
        starts = range(0, n, block_rows)
        for start in (progress(starts, description=f"import {dataset}", total=len(starts)) if progress else starts):
            stop = min(start + block_rows, n)
            for m, (rows, shape, where) in sources.items():
                block = np.asarray(rows(start, stop), dtype=np.float32)
                finite = np.isfinite(block.reshape(len(block), -1)).all(1)
                if not finite.all():
                    bad = start + int(np.argmin(finite))
                    raise UserError(f"{where}: expected finite values, found NaN/Inf in clip {bad}")
                w.write(m, start, block)
        for name, value in labels.items():
            w.labels(name, value)
        for name, idx in splits.items():
            w.split(name, idx)
        if ids is not None:
            w.ids(ids)
    return out


def _clip_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """[N, T, C+1] -> [N]: the class active for most seconds (background excluded); -1 if none."""
    seconds = matrix[..., :-1].sum(1)
    return np.where(seconds.max(1) > 0, seconds.argmax(1), -1).astype(np.int64)


# --------------------------------------------------------------------------- AVE-ECCV18
def import_ave(root: str | Path, out: str | Path, classes: str | Path | None = None, video_dtype: str = "float32",
               progress=None) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected the AVE-ECCV18 data folder)")
    files = {m: root / f for m, f in (("audio", "audio_feature.h5"), ("video", "visual_feature.h5"),
                                      ("labels", "labels.h5"))}
    handles = {m: _open_h5(p) for m, p in files.items()}
    try:
        data = {m: _h5_key(f, files[m], "avadataset") for m, f in handles.items()}
        audio, video, lab = data["audio"], data["video"], data["labels"]
        if audio.ndim != 3:
            raise UserError(f"{files['audio']}: avadataset: expected shape [N,T,D], found {list(audio.shape)}")
        if video.ndim not in (3, 5):
            raise UserError(f"{files['video']}: avadataset: expected shape [N,T,H,W,C] or [N,T,C], "
                            f"found {list(video.shape)}")
        if video.shape[:2] != audio.shape[:2]:
            raise UserError(f"{files['video']}: avadataset: expected [N,T]={list(audio.shape[:2])} like "
                            f"{files['audio'].name}, found {list(video.shape[:2])}")
        n, t = audio.shape[:2]
        if lab.ndim != 3 or lab.shape[:2] != (n, t) or lab.shape[2] < 2:
            raise UserError(f"{files['labels']}: avadataset: expected shape [{n},{t},C+1] (one row per clip and "
                            f"second), found {list(lab.shape)}")
        onehot = lab[()]
        if not np.isfinite(onehot).all() or not np.isin(onehot, (0, 1)).all():
            raise UserError(f"{files['labels']}: avadataset: expected 0/1 one-hot values, found others")
        n_classes = lab.shape[2] - 1
        clip = _clip_from_matrix(onehot)
        names = _ave_names(root, classes, clip, n_classes)
        splits = {}
        for s in SPLITS:
            path = root / f"{s}_order.h5"
            with _open_h5(path) as f:
                order = np.asarray(_h5_key(f, path, "order")[()]).reshape(-1)
            if order.dtype.kind not in "iu" and not (order.dtype.kind == "f" and np.all(order == np.round(order))):
                raise UserError(f"{path}: order: expected integer clip indices, found dtype {order.dtype}")
            order = order.astype(np.int64)
            bad = order[(order < 0) | (order >= n)]
            if bad.size:
                raise UserError(f"{path}: order: index {int(bad[0])} out of range, expected 0 <= i < {n}")
            splits[s] = order
        sources = {"audio": (lambda a, b: audio[a:b], audio.shape[1:], f"{files['audio']}: avadataset"),
                   "video": (lambda a, b: video[a:b], video.shape[1:], f"{files['video']}: avadataset")}
        return write_native(Path(out), "ave", names, n, sources, {"all": onehot, "clip": clip}, splits,
                            {"source": f"AVE-ECCV18 layout: {root}", "video_dtype": video_dtype}, progress)
    finally:
        for f in handles.values():
            f.close()


def _ave_names(root: Path, classes, clip: np.ndarray, n_classes: int) -> list[str]:
    """Class names from --classes, else from Annotations.txt (category of the clips with each label), else ids."""
    if classes is not None:
        names = read_names(classes)
        if len(names) != n_classes:
            raise UserError(f"{classes}: expected {n_classes} class names (labels have {n_classes} classes + "
                            f"background), found {len(names)}")
        return names
    ann = root / "Annotations.txt"
    if not ann.is_file():
        return [f"class_{i:02d}" for i in range(n_classes)]
    try:
        ann_text = ann.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{ann}: not UTF-8 text (byte {exc.start})") from None
    lines = [ln for ln in ann_text.splitlines() if ln.strip()]
    if lines and lines[0].lower().startswith("category&"):
        lines = lines[1:]
    if len(lines) != len(clip):
        raise UserError(f"{ann}: expected {len(clip)} annotation lines (one per clip), found {len(lines)}")
    names: dict[int, str] = {}
    for i, (line, c) in enumerate(zip(lines, clip)):
        category = line.split("&")[0].strip()
        if c >= 0 and names.setdefault(int(c), category) != category:
            raise UserError(f"{ann}: line {i + 1}: label {int(c)} is '{names[int(c)]}' elsewhere, found '{category}'")
    return [names.get(i, f"class_{i:02d}") for i in range(n_classes)]


# --------------------------------------------------------------------------- CMG-style zipped pickles
_NUMPY_GLOBALS = {(prefix + mod, name) for prefix in ("numpy.core.", "numpy._core.")
                  for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                    ("numeric", "_frombuffer"))} | {("numpy", "ndarray"), ("numpy", "dtype")}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays (and plain lists / numbers) and nothing else: any other global a
    pickle names — `os.system`, `builtins.eval`, a class of some library — is refused before it is looked up, so a
    crafted file cannot run code (plain `pickle.load` would call whatever the file names)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):   # numpy >= 2 dtype classes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only numpy arrays are accepted; "
                                     f"convert other pickles to .npy)")


def load_array_pickle(raw: bytes):
    """A numpy array (or nested numeric lists) from pickle bytes, through `ArrayUnpickler` (never runs code)."""
    return ArrayUnpickler(io.BytesIO(raw)).load()


def _read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    """One clip's bytes, refused before decompression when the zip declares more than a clip may hold (a zip
    bomb would otherwise fill the memory): at most `values_per_clip` float64 values plus 1 MB of pickle."""
    from benchmark import bounds
    most = bounds.limit("values_per_clip", bounds.FILE_BOUNDS) * 8 + 2**20
    size = archive.getinfo(member).file_size
    if size > most:
        raise UserError(f"{archive.filename}:{member}: {size} bytes uncompressed, at most {most} for one clip")
    return archive.read(member)


class PickleZips:
    """Per-clip feature arrays: a folder of `<id>.zip` (each holding one pickled array) or one `.zip` of `<id>.pkl`.

    Members are unpickled by `ArrayUnpickler`, which rebuilds numpy arrays only: a pickle naming any other
    global is refused (one error line) instead of running it. `.npy` members are read with allow_pickle=False."""

    def __init__(self, path: str | Path, modality: str):
        self.path, self.modality = Path(path), modality
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.path.is_dir():
            return
        if not self.path.is_file():
            raise UserError(f"{self.path}: {modality} features not found (expected a folder of <id>.zip or a .zip)")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{self.path}: not a readable zip file: {exc}") from None
        for member in self._zip.namelist():
            if not member.endswith("/"):
                self._members[Path(member).stem] = member

    def _candidates(self, key: str) -> list[str]:
        return [key, key[:11]] if len(key) > 11 else [key]

    def has(self, key: str) -> bool:
        return any(self._locate(k) is not None for k in self._candidates(key))

    def _locate(self, key: str):
        if self._zip is not None:
            return self._members.get(key)
        path = self.path / f"{key}.zip"
        return path if path.is_file() else None

    def load(self, key: str) -> np.ndarray:
        where = next((w for w in map(self._locate, self._candidates(key)) if w is not None), None)
        if where is None:
            raise UserError(f"{self.path}: no {self.modality} features for clip '{key}'")
        try:
            if self._zip is not None:
                raw, label = _read_member(self._zip, where), f"{self.path}:{where}"
            else:
                with zipfile.ZipFile(where) as z:
                    members = [m for m in z.namelist() if not m.endswith("/")]
                    if len(members) != 1:
                        raise UserError(f"{where}: expected one pickled array, found {len(members)} members")
                    raw, label = _read_member(z, members[0]), f"{where}:{members[0]}"
            if raw[:6] == b"\x93NUMPY":   # a .npy member
                array = np.load(io.BytesIO(raw), allow_pickle=False)
            else:
                array = load_array_pickle(raw)
        except UserError:
            raise
        except Exception as exc:  # a corrupt zip or pickle: one line, never a traceback
            raise UserError(f"{where}: unreadable {self.modality} features ({type(exc).__name__}: {exc})") from None
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as exc:   # ragged lists and the like
            raise UserError(f"{label}: expected a numeric array [T, ...] ({type(exc).__name__}: {exc})") from None
        if array.dtype.kind not in "fiu" or array.ndim < 2:
            raise UserError(f"{label}: expected a numeric array [T, ...], found dtype {array.dtype} "
                            f"shape {list(array.shape)}")
        if array.shape[0] == 0 or 0 in array.shape:
            raise UserError(f"{label}: expected a non-empty array [T, ...], found shape {list(array.shape)}")
        return array

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _clip_rows(source: PickleZips, keys: list[str], seconds: int) -> tuple[Rows, tuple]:
    """Rows reader over per-clip pickles; the first clip fixes the per-clip shape, later clips must match it."""
    first = fix_length(source.load(keys[0]), seconds)

    def rows(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, *first.shape), np.float32)
        for i in range(a, b):
            x = fix_length(source.load(keys[i]), seconds)
            if x.shape != first.shape:
                raise UserError(f"{source.path}: clip '{keys[i]}': expected {source.modality} shape "
                                f"{list(first.shape)} like clip '{keys[0]}', found {list(x.shape)}")
            out[i - a] = x
        return out
    return rows, first.shape


def _sources(paths: dict[str, str | Path | None], keys: list[str], seconds: int, skip_missing: bool):
    """Open each given modality, drop (or refuse) clips missing in any of them; returns (sources, kept positions)."""
    opened = {m: PickleZips(p, m) for m, p in paths.items() if p is not None}
    if not opened:
        raise UserError("no features given (pass at least one of --audio, --video, --text)")
    kept = [i for i, k in enumerate(keys) if all(s.has(k) for s in opened.values())]
    if len(kept) != len(keys) and not skip_missing:
        missing = keys[next(i for i, j in enumerate(kept + [len(keys)]) if i != j)]
        where = next(s.path for s in opened.values() if not s.has(missing))
        raise UserError(f"{where}: no features for clip '{missing}' ({len(keys) - len(kept)} clips missing; "
                        f"--skip-missing drops them)")
    if not kept:
        raise UserError("no clip has features in every given modality")
    return opened, kept


def import_cmg(csv_path: str | Path, out: str | Path, audio=None, video=None, text=None, name: str = "cmg",
               classes=None, seconds: int = 10, skip_missing: bool = False,
               split_fractions: Sequence[float] = SPLIT_FRACTIONS, split_seed: int = 0, video_dtype: str = "float32",
               progress=None) -> Path:
    """CSV `category,video_id[,split]` + per-clip pickles -> native file with labels/all (event over the whole
    clip, as the UCF/VGG loaders assume) and labels/clip."""
    check_import_args(seconds, split_fractions, out)
    csv_path = Path(csv_path)
    rows = _read_csv(csv_path, ",", ("category", "video_id"))
    cats = [r["category"] for r in rows]
    ids = [r["video_id"] for r in rows]
    names = read_names(classes) if classes is not None else sorted(set(cats))
    index = {c: i for i, c in enumerate(names)}
    for line, c in enumerate(cats, start=2):
        if c not in index:
            raise UserError(f"{csv_path}: line {line}: category '{c}' is not in the class list {classes}")
    duplicate = next((k for k, c in Counter(ids).items() if c > 1), None)
    if duplicate is not None:
        raise UserError(f"{csv_path}: video_id '{duplicate}' appears more than once")
    opened, kept = _sources({"audio": audio, "video": video, "text": text}, ids, seconds, skip_missing)
    keep = [ids[i] for i in kept]
    try:
        clip = np.array([index[cats[i]] for i in kept], np.int64)
        n = len(kept)
        onehot = np.zeros((n, seconds, len(names) + 1), np.uint8)
        onehot[np.arange(n), :, clip] = 1
        if "split" in rows[0]:
            splits = {s: [] for s in SPLITS}
            for j, i in enumerate(kept):
                s = rows[i]["split"].strip().lower()
                s = {"validation": "val", "valid": "val"}.get(s, s)
                if s not in splits:
                    raise UserError(f"{csv_path}: line {i + 2}: split '{rows[i]['split']}' is not train/val/test")
                splits[s].append(j)
            splits = {s: np.array(v, np.int64) for s, v in splits.items()}
            note = "split column of the CSV"
        else:
            splits = seeded_splits(n, split_fractions, split_seed)
            note = f"random split {list(split_fractions)} with seed {split_seed} (the CSV has no split column)"
        sources = {}
        for m, src in opened.items():
            reader, shape = _clip_rows(src, keep, seconds)
            sources[m] = (reader, shape, str(src.path))
        return write_native(Path(out), name, names, n, sources, {"all": onehot, "clip": clip}, splits,
                            {"source": f"CMG layout: {csv_path}", "split_note": note,
                             "label_note": "event assumed over the whole clip", "ids": keep,
                             "video_dtype": video_dtype}, progress)
    finally:
        for s in opened.values():
            s.close()


# --------------------------------------------------------------------------- AVVP
def _read_csv(path: Path, delimiter: str, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    if "\x00" in text:
        raise UserError(f"{path}: contains NUL bytes (not a text CSV)")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            sep = "tab" if delimiter == "\t" else repr(delimiter)
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} ({sep}-separated; found: "
                            f"{', '.join(header) or 'no header'})")
        rows = [{(k or "").strip(): (v if isinstance(v, str) else "").strip() for k, v in row.items()}
                for row in reader]
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV: {exc}") from None
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def parse_avvp_events(path: Path, seconds: int) -> dict[str, list[tuple[int, int, str]]]:
    """`filename onset offset event_labels` (tab-separated; comma lists or one event per row) -> events per file."""
    events: dict[str, list[tuple[int, int, str]]] = {}
    for line, row in enumerate(_read_csv(path, "\t", ("filename", "onset", "offset", "event_labels")), start=2):
        parts = [row[c].split(",") for c in ("onset", "offset", "event_labels")]
        if len({len(p) for p in parts}) != 1:
            raise UserError(f"{path}: line {line}: onset/offset/event_labels lists differ in length "
                            f"({', '.join(str(len(p)) for p in parts)})")
        for on, off, label in zip(*parts):
            try:
                on_i, off_i = int(on), int(off)
            except ValueError:
                raise UserError(f"{path}: line {line}: expected integer seconds, found onset '{on}' "
                                f"offset '{off}'") from None
            if not 0 <= on_i < off_i <= seconds:
                raise UserError(f"{path}: line {line}: expected 0 <= onset < offset <= {seconds}, found "
                                f"{on_i}..{off_i}")
            events.setdefault(row["filename"], []).append((on_i, off_i, label.strip()))
    return events


def import_avvp(audio_csv, visual_csv, out, audio=None, video=None, classes=None, seconds: int = 10,
                skip_missing: bool = False, split_fractions: Sequence[float] = SPLIT_FRACTIONS, split_seed: int = 0,
                video_dtype: str = "float32", progress=None) -> Path:
    """Audio and visual annotations -> labels/audio, labels/video `[N,T,C+1]` (background column where no event)."""
    check_import_args(seconds, split_fractions, out)
    ann = {"audio": (Path(audio_csv), parse_avvp_events(Path(audio_csv), seconds)),
           "video": (Path(visual_csv), parse_avvp_events(Path(visual_csv), seconds))}
    files = list(dict.fromkeys([*ann["audio"][1], *ann["video"][1]]))
    seen = sorted({e[2] for _, ev in ann.values() for evs in ev.values() for e in evs})
    names = read_names(classes) if classes is not None else seen
    index = {c: i for i, c in enumerate(names)}
    for path, ev in ann.values():
        for f, evs in ev.items():
            for e in evs:
                if e[2] not in index:
                    raise UserError(f"{path}: clip '{f}': event label '{e[2]}' is not in the class list {classes}")
    opened, kept = _sources({"audio": audio, "video": video}, files, seconds, skip_missing)
    keep = [files[i] for i in kept]
    try:
        n = len(keep)
        mats = {}
        for m, (_, ev) in ann.items():
            mat = np.zeros((n, seconds, len(names) + 1), np.uint8)
            for i, f in enumerate(keep):
                for on, off, label in ev.get(f, ()):
                    mat[i, on:off, index[label]] = 1
            mat[..., -1] = ~mat[..., :-1].any(-1)
            mats[m] = mat
        clip = _clip_from_matrix(mats["audio"].astype(np.int64) + mats["video"])
        sources = {}
        for m, src in opened.items():
            reader, shape = _clip_rows(src, keep, seconds)
            sources[m] = (reader, shape, str(src.path))
        return write_native(Path(out), "avvp", names, n, sources, {**mats, "clip": clip},
                            seeded_splits(n, split_fractions, split_seed),
                            {"source": f"AVVP layout: {audio_csv}, {visual_csv}",
                             "split_note": f"random split {list(split_fractions)} with seed {split_seed}",
                             "ids": keep, "video_dtype": video_dtype}, progress)
    finally:
        for s in opened.values():
            s.close()

