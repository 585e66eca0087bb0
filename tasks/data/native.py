"""unibench's native feature format: one self-describing HDF5 file per dataset (docs/DATA.md).

Layout of `<name>.h5` (widths are read from the file, never assumed):

    audio  [N, T, Da]            video [N, T, H, W, C] or [N, T, C]       text [N, L, Dt]
    labels/all | labels/audio | labels/video   [N, T, C+1]  one-/multi-hot per second, background last
    labels/clip  [N] int  (class index; -1 = no event, allowed only where a clip can be empty)
    split/train | split/val | split/test       int64 indices
    pairs/<a>_<b>  [P, 2] int  (retrieval files: row = (index into a, index into b); modalities may differ in N)
    latent/<modality>/<factor>  [N, T, d]  optional, synthetic files only: each clip's true per-second factors
                                (semantic, scene, nuisance); importers never write it, real data never has it
    attrs: format_version, dataset, classes, generator (JSON, synthetic files), + free-form JSON attrs

Feature datasets are chunked one clip per chunk, so any subset of clips is read without touching the rest;
they may be stored as float16 (the paper-size video) and are always returned as float32.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from benchmark.atomic import atomic_path
from benchmark.contracts import UserError

FORMAT_VERSION = 1
MODALITIES = ("audio", "video", "text")
LABEL_MATRICES = ("all", "audio", "video")
SPLITS = ("train", "val", "test")
LATENT_FACTORS = ("semantic", "scene", "nuisance")
FEATURE_DTYPES = ("float16", "float32", "float64")
SAMPLE_ROWS = 32                # rows per modality read by the NaN check and the fingerprint
READ_BLOCK_BYTES = 64 * 2**20   # largest contiguous slab `read` pulls from disk at once
MERGE_GAP = 4                   # sorted indices this close are read as one slab (fewer, larger reads)
SMALL_BYTES = 16 * 2**20        # datasets up to this size enter the fingerprint whole


# --------------------------------------------------------------------------- helpers
def sample_rows(n: int, k: int = SAMPLE_ROWS) -> np.ndarray:
    """Deterministic, evenly spread row indices (first and last included) for spot checks."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def index_runs(sorted_idx: np.ndarray, max_rows: int, gap: int = MERGE_GAP) -> Iterator[tuple[int, int]]:
    """Split sorted indices into (i, j) position ranges whose rows span at most `max_rows` and have no gap > `gap`."""
    i, n = 0, len(sorted_idx)
    while i < n:
        j = i + 1
        while (j < n and sorted_idx[j] - sorted_idx[j - 1] <= gap
               and sorted_idx[j] - sorted_idx[i] < max_rows):
            j += 1
        yield i, j
        i = j


def _attr(value):
    """h5py attribute values -> plain Python (bytes -> str, arrays -> lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _err(path, key, message) -> UserError:
    return UserError(f"{path}: {key}: {message}" if key else f"{path}: {message}")


# --------------------------------------------------------------------------- reader
class FeatureFile:
    """Validated reader of one native file. Opening validates (keys, shapes, N, ranges, sampled NaN/Inf)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such feature file")
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._fingerprint: str | None = None
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    # ---- handle (reopened after fork; never pickled)
    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(f"{self.path}: not a readable HDF5 file (truncated or corrupt?): {reason}") from None
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        return {**self.__dict__, "_h5": None, "_pid": None}

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        shapes = ", ".join(f"{m}{list(self.shape(m))}" for m in self.modalities)
        return f"FeatureFile({self.path.name}: {self.dataset}, {shapes}, {len(self.classes)} classes)"

    # ---- metadata
    @property
    def attrs(self) -> dict[str, Any]:
        out = {}
        for key, value in self.h5.attrs.items():
            value = _attr(value)
            if key == "generator" and isinstance(value, str):
                value = json.loads(value)
            out[key] = value
        return out

    @property
    def dataset(self) -> str:
        return str(_attr(self.h5.attrs["dataset"]))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in _attr(self.h5.attrs["classes"])]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.h5)

    def shape(self, modality: str) -> tuple[int, ...]:
        return tuple(self._feature(modality).shape)

    def feature_shape(self, modality: str) -> tuple[int, ...]:
        """Per-clip shape, e.g. (10, 128) or (10, 7, 7, 512)."""
        return self.shape(modality)[1:]

    def n(self, modality: str) -> int:
        return self.shape(modality)[0]

    def stored_dtype(self, modality: str) -> str:
        return str(self._feature(modality).dtype)

    @property
    def label_names(self) -> tuple[str, ...]:
        group = self.h5.get("labels")
        return tuple(k for k in (*LABEL_MATRICES, "clip") if group is not None and k in group)

    @property
    def split_names(self) -> tuple[str, ...]:
        group = self.h5.get("split")
        return tuple(k for k in SPLITS if group is not None and k in group)

    @property
    def latent_names(self) -> dict[str, tuple[str, ...]]:
        """{modality: factors} of the optional `latent/` group (empty for imported / real files)."""
        group = self.h5.get("latent")
        if group is None:
            return {}
        return {m: tuple(f for f in LATENT_FACTORS if f in group[m]) for m in MODALITIES if m in group}

    @property
    def pair_names(self) -> tuple[str, ...]:
        group = self.h5.get("pairs")
        return tuple(sorted(group)) if group is not None else ()

    # ---- data
    def _feature(self, modality: str) -> h5py.Dataset:
        if modality not in MODALITIES or modality not in self.h5:
            raise UserError(f"{self.path}: no '{modality}' features (has: {', '.join(self.modalities)})")
        return self.h5[modality]

    def read(self, modality: str, idx: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Features as float32 `[len(idx), T, ...]` in the order of `idx` (all clips when None).

        Reads sorted runs of clips slab by slab (at most READ_BLOCK_BYTES from disk at a time), so the memory
        used is the output plus one slab, whatever the file size."""
        ds = self._feature(modality)
        n = ds.shape[0]
        idx = np.arange(n) if idx is None else np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise IndexError(f"{self.path.name}: {modality} index {bad} out of range [0, {n})")
        out = np.empty((len(idx), *ds.shape[1:]), dtype=np.float32)
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        row_bytes = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
        max_rows = max(1, READ_BLOCK_BYTES // row_bytes)
        for i, j in index_runs(sidx, max_rows):
            lo, hi = int(sidx[i]), int(sidx[j - 1]) + 1
            slab = ds[lo:hi]
            out[order[i:j]] = slab[sidx[i:j] - lo]
        return out

    def labels(self, name: str) -> np.ndarray:
        """`all`/`audio`/`video`: float32 `[N, T, C+1]`; `clip`: int64 `[N]`."""
        key = f"labels/{name}"
        if key not in self.h5:
            raise UserError(f"{self.path}: no '{key}' (has: {', '.join(self.label_names) or 'no labels'})")
        data = self.h5[key][()]
        return data.astype(np.int64) if name == "clip" else data.astype(np.float32)

    def split(self, name: str) -> np.ndarray:
        key = f"split/{name}"
        if key not in self.h5:
            raise UserError(f"{self.path}: no '{key}' (has: {', '.join(self.split_names) or 'no splits'})")
        return self.h5[key][()].astype(np.int64)

    def latent(self, modality: str, factor: str, idx: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """float32 `[len(idx), T, d]`: the true `factor` of `modality` per second (synthetic files only)."""
        if factor not in self.latent_names.get(modality, ()):
            raise UserError(f"{self.path}: no 'latent/{modality}/{factor}' (only synthetic files carry their true "
                            f"latent factors; this file has {self._latent_text()})")
        data = self.h5[f"latent/{modality}/{factor}"]
        if idx is None:
            return data[()].astype(np.float32)
        rows, where = np.unique(np.asarray(idx, dtype=np.int64).reshape(-1), return_inverse=True)
        if len(rows) and (rows[0] < 0 or rows[-1] >= data.shape[0]):
            raise IndexError(f"{self.path.name}: latent index out of range [0, {data.shape[0]})")
        out = data[rows] if len(rows) else np.zeros((0, *data.shape[1:]))
        return out.astype(np.float32)[where.reshape(-1)]

    def _latent_text(self) -> str:
        names = [f"latent/{m}/{f}" for m, fs in self.latent_names.items() for f in fs]
        return ", ".join(names) if names else "none"

    def ids(self) -> list[str] | None:
        """Source clip ids of imported files (None for synthetic ones)."""
        return [_attr(v) for v in self.h5["ids"][()]] if "ids" in self.h5 else None

    def pairs(self, name: str) -> np.ndarray:
        key = f"pairs/{name}"
        if key not in self.h5:
            raise UserError(f"{self.path}: no '{key}' (has: {', '.join(self.pair_names) or 'no pairs'})")
        return self.h5[key][()].astype(np.int64)

    # ---- validation
    def _validate(self) -> None:
        f, p = self.h5, self.path
        for key in ("format_version", "dataset", "classes"):
            if key not in f.attrs:
                raise _err(p, f"attrs/{key}", "missing (not a unibench native file? import it with "
                                              "`python -m benchmark data import`)")
        version = _attr(f.attrs["format_version"])
        if version != FORMAT_VERSION:
            raise _err(p, "attrs/format_version", f"expected {FORMAT_VERSION}, found {version!r}")
        if "generator" in f.attrs:
            try:
                json.loads(_attr(f.attrs["generator"]))
            except (TypeError, ValueError):
                raise _err(p, "attrs/generator", "expected a JSON string") from None
        self._check_storage()
        if not self.modalities:
            raise _err(p, "", f"no feature dataset (expected at least one of {', '.join(MODALITIES)})")
        for m in self.modalities:
            ds = f[m]
            if not isinstance(ds, h5py.Dataset):
                raise _err(p, m, "expected a dataset, found a group")
            ranks = (3, 5) if m == "video" else (3,)
            if ds.ndim not in ranks:
                want = "[N,T,C] or [N,T,H,W,C]" if m == "video" else "[N,T,D]"
                raise _err(p, m, f"expected shape {want}, found {list(ds.shape)}")
            if str(ds.dtype) not in FEATURE_DTYPES:
                raise _err(p, m, f"expected a float dtype ({', '.join(FEATURE_DTYPES)}), found {ds.dtype}")
        ns = {m: self.n(m) for m in self.modalities}
        retrieval = bool(self.pair_names)
        if not retrieval and len(set(ns.values())) > 1:
            found = ", ".join(f"{m} N={n}" for m, n in ns.items())
            raise _err(p, "", f"modalities must have the same number of clips N, found {found}")
        if "audio" in ns and "video" in ns and self.shape("audio")[1] != self.shape("video")[1]:
            raise _err(p, "video", f"expected T={self.shape('audio')[1]} seconds like audio, "
                                   f"found T={self.shape('video')[1]}")
        n_items = min(ns.values())
        n_classes = len(self.classes)
        for name in self.label_names:
            self._validate_labels(name, ns, n_classes)
        for name in self.split_names:
            self._check_indices(f"split/{name}", f[f"split/{name}"][()], n_items, 1)
        self._validate_latents()
        for name in self.pair_names:
            a, _, b = name.partition("_")
            if a not in ns or b not in ns:
                raise _err(p, f"pairs/{name}", f"expected pairs/<a>_<b> with a, b among the file's modalities "
                                              f"({', '.join(ns)})")
            pairs = f[f"pairs/{name}"][()]
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise _err(p, f"pairs/{name}", f"expected shape [P,2], found {list(pairs.shape)}")
            self._check_indices(f"pairs/{name}[:,0]", pairs[:, 0], ns[a], 1)
            self._check_indices(f"pairs/{name}[:,1]", pairs[:, 1], ns[b], 1)
        for m in self.modalities:
            ds = f[m]
            rows = sample_rows(ds.shape[0])
            try:
                sample = np.stack([ds[int(i)] for i in rows]) if len(rows) else np.zeros(0)
            except OSError as exc:
                raise _err(p, m, f"unreadable data (truncated or corrupt file?): {str(exc).splitlines()[0]}") \
                    from None
            if not np.isfinite(sample).all():
                bad = int(rows[np.flatnonzero(~np.isfinite(sample.reshape(len(rows), -1)).all(1))[0]])
                raise _err(p, m, f"expected finite values, found NaN/Inf in clip {bad}")

    def _check_storage(self) -> None:
        """Before any array is read: every dataset stored inside this file (external raw storage or a virtual
        dataset would read other local files as features), its declared shape within `benchmark.bounds`, and
        uncompressed data actually stored (a header declaring N = 1e9 over a few KB reads back as fill values)."""
        from benchmark import bounds
        p, found = self.path, []
        self.h5.visititems(lambda key, obj: found.append((key, obj)) if isinstance(obj, h5py.Dataset) else None)
        for key, ds in found:
            if ds.is_virtual or ds.external:
                kind = "virtual" if ds.is_virtual else "external"
                raise _err(p, key, f"{kind} storage (data kept in other files) is not accepted; copy the data "
                                   f"into this file")
            bounds.check_declared(p, key, ds.shape, ds.dtype.itemsize)
            declared = ds.size * ds.dtype.itemsize
            if ds.compression is None and declared and ds.id.get_storage_size() < declared:
                raise _err(p, key, f"declares {list(ds.shape)} ({declared} bytes) but stores "
                                   f"{ds.id.get_storage_size()} (truncated, or never written)")
        if "classes" in self.h5.attrs:
            n_classes = np.size(self.h5.attrs["classes"])
            if n_classes > bounds.limit("classes", bounds.FILE_BOUNDS):
                raise _err(p, "attrs/classes", f"{n_classes} classes, at most "
                                               f"{bounds.limit('classes', bounds.FILE_BOUNDS)}")

    def _validate_latents(self) -> None:
        """The optional `latent/` group: only `latent/<modality>/<factor>` for the file's modalities and the known
        factors, each `[N, T, d]` with the N and T of that modality's features, float, finite."""
        group = self.h5.get("latent")
        if group is None:
            return
        if not isinstance(group, h5py.Group):
            raise _err(self.path, "latent", "expected a group latent/<modality>/<factor>")
        for m in group:
            if m not in self.modalities or not isinstance(group[m], h5py.Group):
                raise _err(self.path, f"latent/{m}", f"expected a group named after one of the file's modalities "
                                                     f"({', '.join(self.modalities)})")
            n, t = self.shape(m)[:2]
            for factor in group[m]:
                key, ds = f"latent/{m}/{factor}", group[m][factor]
                if factor not in LATENT_FACTORS:
                    raise _err(self.path, key, f"unknown factor (expected one of {', '.join(LATENT_FACTORS)})")
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.shape[:2] != (n, t):
                    found = list(ds.shape) if isinstance(ds, h5py.Dataset) else "a group"
                    raise _err(self.path, key, f"expected shape [{n},{t},d] like {m}, found {found}")
                if str(ds.dtype) not in FEATURE_DTYPES:
                    raise _err(self.path, key, f"expected a float dtype, found {ds.dtype}")
                rows = sample_rows(n)
                if len(rows) and not np.isfinite(ds[rows]).all():
                    raise _err(self.path, key, "expected finite values, found NaN/Inf")

    def _validate_labels(self, name: str, ns: dict[str, int], n_classes: int) -> None:
        p, data = self.path, self.h5[f"labels/{name}"]
        if name == "clip":
            n = min(ns.values())
            if data.shape != (n,):
                raise _err(p, "labels/clip", f"expected shape [{n}] (one class per clip), found {list(data.shape)}")
            self._check_indices("labels/clip", data[()], n_classes, 1, allow=-1)
            return
        source = name if name in ns else next(iter(ns))
        n, t = ns[source], self.shape(source)[1]
        if data.shape != (n, t, n_classes + 1):
            raise _err(p, f"labels/{name}", f"expected shape [{n},{t},{n_classes + 1}] (N, T, {n_classes} classes "
                                            f"+ background), found {list(data.shape)}")
        if data.dtype.kind == "f" and not np.isfinite(data[()]).all():
            raise _err(p, f"labels/{name}", "expected finite values, found NaN/Inf")

    def _check_indices(self, key: str, values: np.ndarray, n: int, ndim: int, allow: int | None = None) -> None:
        values = np.asarray(values)
        if values.dtype.kind not in "iu":
            raise _err(self.path, key, f"expected integer indices, found dtype {values.dtype}")
        if values.ndim != ndim:
            raise _err(self.path, key, f"expected a {ndim}-d array, found shape {list(values.shape)}")
        if values.size:
            low = 0 if allow is None else allow
            bad = values[(values < low) | (values >= n)]
            if bad.size:
                raise _err(self.path, key, f"index {int(bad[0])} out of range, expected {low} <= i < {n}")

    def scan(self, progress=None) -> None:
        """Full NaN/Inf check of every clip (opening only samples SAMPLE_ROWS clips), one slab of at most
        READ_BLOCK_BYTES at a time; `progress(iterable, description, total)` shows the slabs (a paper-size file
        takes minutes). The declared shapes were bounded and their storage checked when the file was opened."""
        for m in self.modalities:
            n = self.n(m)
            rows = max(1, READ_BLOCK_BYTES // max(1, 4 * int(np.prod(self.feature_shape(m)))))
            starts = range(0, n, rows)
            if progress is not None:
                starts = progress(starts, description=f"checking {self.path.name} {m}", total=len(starts))
            for start in starts:
                block = self.read(m, np.arange(start, min(start + rows, n)))
                finite = np.isfinite(block.reshape(len(block), -1)).all(1)
                if not finite.all():
                    raise _err(self.path, m, f"expected finite values, found NaN/Inf in clip "
                                             f"{start + int(np.argmin(finite))}")

    # ---- fingerprint
    @property
    def fingerprint(self) -> str:
        """Hash of attrs + every dataset's name/shape/dtype + content (small datasets whole, features sampled)."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"unibench-native-{FORMAT_VERSION}".encode())
            h.update(json.dumps(self.attrs, sort_keys=True, default=str).encode())
            names: list[str] = []
            self.h5.visit(lambda k: names.append(k) if isinstance(self.h5[k], h5py.Dataset) else None)
            for key in sorted(names):
                ds = self.h5[key]
                h.update(f"{key}|{list(ds.shape)}|{ds.dtype}".encode())
                if ds.nbytes <= SMALL_BYTES or ds.ndim == 0:
                    h.update(np.ascontiguousarray(ds[()]).tobytes())
                else:
                    for i in sample_rows(ds.shape[0]):
                        h.update(np.ascontiguousarray(ds[int(i)]).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


# --------------------------------------------------------------------------- writer
class NativeWriter:
    """Writes one native file into a temp file beside `path`; `os.replace` on success, nothing left on failure.

    Usage:
        with NativeWriter(out, dataset="ave", classes=names, generator=knobs) as w:
            w.features("audio", (N, T, 128))           # then w.write("audio", start, rows) block by block
            w.labels("all", onehot); w.split("train", idx)
    The finished file is re-opened through `FeatureFile` before it replaces `path`, so a file that would fail
    validation is never published.
    """

    def __init__(self, path: str | Path, dataset: str, classes: Iterable[str], generator: dict | None = None,
                 **attrs: Any):
        self.path = Path(path)
        self.dataset, self.classes = dataset, [str(c) for c in classes]
        self.generator, self.extra = generator, attrs
        self.f: h5py.File | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> "NativeWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._publish = atomic_path(self.path)
        self._tmp = self._publish.__enter__()
        self.f = h5py.File(self._tmp, "w", track_order=False)
        a = self.f.attrs
        a["format_version"] = FORMAT_VERSION
        a["dataset"] = self.dataset
        a["classes"] = np.array(self.classes, dtype=h5py.string_dtype())
        if self.generator is not None:
            a["generator"] = json.dumps(self.generator, sort_keys=True)
        for key, value in self.extra.items():
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                a[key] = np.array(value, dtype=h5py.string_dtype())
            else:
                a[key] = value if isinstance(value, (str, int, float)) else json.dumps(value, sort_keys=True)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.f is not None:
                self.f.close()
            if exc_type is None:
                try:
                    FeatureFile(self._tmp).close()   # validate before publishing
                except UserError as err:
                    raise UserError(str(err).replace(str(self._tmp), str(self.path))) from None
        except BaseException as err:                 # nothing published, the temp file removed
            self._publish.__exit__(type(err), err, err.__traceback__)
            raise
        self._publish.__exit__(exc_type, exc, tb)   # publishes (or, after an exception, removes the temp file)
        return False

    def features(self, modality: str, shape: tuple[int, ...], dtype: str = "float32") -> h5py.Dataset:
        """Create a feature dataset chunked one clip per chunk (uncompressed: reading speed first)."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}")
        return self.f.create_dataset(modality, shape=shape, dtype=dtype, chunks=(1, *shape[1:]),
                                     track_times=False)

    def latent(self, modality: str, factor: str, shape: tuple[int, ...]) -> h5py.Dataset:
        """Create `latent/<modality>/<factor>` (synthetic files only; fill it with `write`)."""
        if modality not in MODALITIES or factor not in LATENT_FACTORS:
            raise ValueError(f"unknown latent {modality!r}/{factor!r}")
        return self.f.create_dataset(f"latent/{modality}/{factor}", shape=shape, dtype="float32",
                                     chunks=(1, *shape[1:]), track_times=False)

    def write(self, modality: str, start: int, rows: np.ndarray) -> None:
        ds = self.f[modality]
        ds[start:start + len(rows)] = rows.astype(ds.dtype, copy=False)

    def labels(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values)
        dtype = "int64" if name == "clip" else "uint8"
        self.f.create_dataset(f"labels/{name}", data=values.astype(dtype), track_times=False)

    def split(self, name: str, idx: np.ndarray) -> None:
        self.f.create_dataset(f"split/{name}", data=np.asarray(idx, dtype=np.int64), track_times=False)

    def pairs(self, name: str, pairs: np.ndarray) -> None:
        self.f.create_dataset(f"pairs/{name}", data=np.asarray(pairs, dtype=np.int64), track_times=False)

    def ids(self, ids: Iterable[str]) -> None:
        """Source clip ids `[N]` (importers), so a row can be traced back to the user's files."""
        self.f.create_dataset("ids", data=np.array(list(ids), dtype=h5py.string_dtype()), track_times=False)


@contextlib.contextmanager
def opened(path: str | Path) -> Iterator[FeatureFile]:
    ff = FeatureFile(path)
    try:
        yield ff
    finally:
        ff.close()
