"""A world = a directory of native files; the pretraining corpus streamed from `pretrain.h5`; the world cache."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from benchmark.contracts import UserError

from .native import FeatureFile

CORPUS_NAME = "pretrain"
COMPLETE = ".complete"
_SPLITS3 = ("split/train", "split/val", "split/test")
# what the tasks read from each dataset file beyond its features (checked when a run opens the file, so a folder
# that lacks one fails before any cell starts instead of inside it)
REQUIRED = {
    "ave": ("labels/clip", "labels/all", *_SPLITS3),
    "avvp": ("labels/audio", "labels/video", *_SPLITS3),
    "ucf": ("labels/clip", *_SPLITS3),
    "vgg": ("labels/clip", *_SPLITS3),
}


class H5Corpus:
    """`contracts.Corpus` over a native file: batches are read clip-chunk by clip-chunk, never the whole file.

    Each batch takes the next `batch_size` positions of a seeded permutation, sorts them (so HDF5 reads run
    forwards through the file) and returns them in that sorted order with their `index`; memory is one batch."""

    def __init__(self, ff: FeatureFile):
        ns = {m: ff.n(m) for m in ff.modalities}
        if len(set(ns.values())) != 1:
            raise UserError(f"{ff.path}: a pretraining corpus needs paired clips (same N in every modality), "
                            f"found {ns}")
        self.file = ff
        self.modalities = ff.modalities
        self.fingerprint = ff.fingerprint
        self._n = next(iter(ns.values()))

    def __len__(self) -> int:
        return self._n

    def __repr__(self):
        return f"H5Corpus({self.file.path}, N={self._n}, modalities={self.modalities})"

    def feature_shape(self, modality: str) -> tuple[int, ...]:
        return self.file.feature_shape(modality)

    def labels(self, name: str) -> np.ndarray:
        """The corpus' labels (e.g. `clip` `[N]`), for supervised pretraining such as SimMMDG's."""
        return self.file.labels(name)

    def iter_batches(self, batch_size: int, seed: int, shuffle: bool = True,
                     modalities: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        names = tuple(modalities) if modalities is not None else self.modalities
        for m in names:
            if m not in self.modalities:
                raise UserError(f"{self.file.path}: corpus has no '{m}' (has: {', '.join(self.modalities)})")
        order = np.random.default_rng(seed).permutation(self._n) if shuffle else np.arange(self._n)
        for start in range(0, self._n, batch_size):
            idx = np.sort(order[start:start + batch_size])
            batch: dict[str, Any] = {m: self.file.read(m, idx) for m in names}
            batch["index"] = idx
            yield batch


class LocalWorld:
    """`contracts.World` over a directory of `<name>.h5` files (synthetic or the user's own).

    With `scan_cache` (a folder; the runner passes `<results>/data/.scanned`) every file is fully checked for
    NaN/Inf when first opened, once per file fingerprint (a marker `<fingerprint>.ok` records the pass); without
    it opening only samples clips (what `data info` does). `progress(iterable, description, total)` shows the
    scan of a large file."""

    def __init__(self, root: str | Path, scan_cache: str | Path | None = None, progress=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"world '{self.root}' is not a directory (expected a folder of native .h5 files)")
        self._files: dict[str, FeatureFile] = {}
        self.scan_cache = Path(scan_cache) if scan_cache is not None else None
        self.progress = progress

    def __repr__(self):
        return f"LocalWorld({self.root})"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.h5"))

    def open(self, name: str) -> FeatureFile:
        if name not in self._files:
            path = self.root / f"{name}.h5"
            if not path.is_file():
                have = ", ".join(self.names()) or "none"
                raise UserError(f"world '{self.root}' has no {name}.h5 (has: {have})")
            ff = FeatureFile(path)
            if self.scan_cache is not None:
                try:
                    self._check_usable(name, ff)
                    self._scan(ff)
                except BaseException:
                    ff.close()
                    raise
            self._files[name] = ff
        return self._files[name]

    def _check_usable(self, name: str, ff: FeatureFile) -> None:
        """Keys the tasks need, non-empty splits, and feature widths that match the pretraining corpus."""
        for key in REQUIRED.get(name, ()):
            if key not in ff.h5:
                raise UserError(f"{ff.path}: missing '{key}' (the tasks reading {name}.h5 need it)")
        for split in ff.split_names:
            if len(ff.h5[f"split/{split}"]) == 0:
                raise UserError(f"{ff.path}: split/{split} is empty (every split needs at least one clip)")
        if name != CORPUS_NAME and (self.root / f"{CORPUS_NAME}.h5").is_file():
            corpus = self.open(CORPUS_NAME)
            for m in ff.modalities:
                if m in corpus.modalities and ff.feature_shape(m)[1:] != corpus.feature_shape(m)[1:]:
                    raise UserError(f"{ff.path}: {m} features are {list(ff.feature_shape(m)[1:])} per step, but "
                                    f"{corpus.path.name} has {list(corpus.feature_shape(m)[1:])} (a model "
                                    f"pretrained on one cannot encode the other)")

    def _scan(self, ff: FeatureFile) -> None:
        marker = self.scan_cache / f"{ff.fingerprint}.ok"
        if marker.exists():
            return
        ff.scan(self.progress)   # UserError naming the file, the modality and the first bad clip
        try:
            self.scan_cache.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{ff.path}\n")
        except OSError:   # a read-only store only costs a rescan next time
            pass

    def fingerprint(self, names: Iterable[str]) -> str:
        h = hashlib.sha256(b"unibench-world")
        for name in sorted(set(names)):
            h.update(f"{name}={self.open(name).fingerprint};".encode())
        return h.hexdigest()[:16]

    def corpus(self) -> H5Corpus:
        return H5Corpus(self.open(CORPUS_NAME))

    def close(self) -> None:
        for ff in self._files.values():
            ff.close()
        self._files.clear()


def open_world(root: str | Path, scan_cache: str | Path | None = None, progress=None) -> LocalWorld:
    return LocalWorld(root, scan_cache=scan_cache, progress=progress)


def _fingerprint(path: Path) -> str:
    ff = FeatureFile(path)
    try:
        return ff.fingerprint
    finally:
        ff.close()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _record(root: Path) -> dict[str, dict]:
    """Per feature file of a world folder: its content fingerprint (what cell keys are made of) and its
    size + mtime, so that checking an unchanged world costs a stat per file, not a fingerprint pass."""
    return {path.stem: {"fingerprint": _fingerprint(path), "stat": _stat(path)} for path in sorted(root.glob("*.h5"))}


_VERIFIED: set[str] = set()   # worlds this process has fingerprinted once (afterwards size + mtime suffice)


def _changed_files(root: Path) -> list[str]:
    """Files whose fingerprint differs from the one recorded at generation (a legacy marker records none; an
    unreadable one is reported as COMPLETE). The first check in a process fingerprints every file (sampled
    content: garbage written with size and mtime kept is seen); later ones trust an unchanged size and mtime."""
    import json
    try:
        marker = json.loads((root / COMPLETE).read_text())
    except (OSError, ValueError):
        return [COMPLETE]
    recorded = marker.get("files", {}) if isinstance(marker, dict) else None
    if not isinstance(recorded, dict):
        return [COMPLETE]
    verified = str(root.resolve()) in _VERIFIED
    changed = []
    for name, rec in sorted(recorded.items()):
        path = root / f"{name}.h5"
        try:
            if verified and _stat(path) == rec["stat"] or _fingerprint(path) == rec["fingerprint"]:
                continue
        except Exception:          # noqa: BLE001 - a missing or unreadable file is a changed file
            pass
        changed.append(name)
    if not changed:
        _VERIFIED.add(str(root.resolve()))
    return changed


def _other_knobs(root: Path, profile: str) -> bool:
    """Whether the world was generated with other knobs than its profile has now (e.g. before the default generator
    version changed): intact files, but not today's world. A world without world.json is judged by its files."""
    import json

    from .synth import profile_knobs, recorded_knobs
    try:
        knobs = json.loads((root / "world.json").read_text())["knobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return knobs != json.loads(json.dumps(recorded_knobs(profile_knobs(profile))))


def ensure_world(profile: str, seed: int, cache_root: str | Path,
                 progress: Callable[..., Iterable] | None = None) -> Path:
    """Generate the synthetic world `<cache_root>/<profile>-s<seed>/` once and return its path.

    Generation goes into a temp directory that is renamed into place with a `.complete` marker inside, under a
    file lock, so concurrent callers wait for one generator and a killed one leaves no half world. The marker
    records every file's fingerprint: a world whose files no longer match (edited, truncated, garbled) is
    regenerated with a one-line warning instead of being keyed apart and silently computed on."""
    import json

    from benchmark.notice import warn
    from benchmark.locks import file_lock, outside, remove_tree

    from .synth import PROFILES, synthesize
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    cache_root = Path(cache_root)
    root = cache_root / f"{profile}-s{seed}"
    linked_out = outside(cache_root, root) is not None     # never read, mark or delete through such a link
    if not linked_out and (root / COMPLETE).exists() and not _changed_files(root) and not _other_knobs(root, profile):
        return root
    with file_lock(cache_root / f".{root.name}.lock"):
        if linked_out:
            warn(f"world {root} is a symbolic link out of the store; replacing the link by a generated world")
            remove_tree(root)
        if (root / COMPLETE).exists():
            changed = _changed_files(root)
            if not changed and not _other_knobs(root, profile):
                return root
            names = ", ".join(f"{f}.h5" if f != COMPLETE else f"its {COMPLETE} marker" for f in changed)
            warn(f"world {root}: {names} changed since generation; regenerating" if changed else
                 f"world {root} was generated with other knobs than profile '{profile}' has now (another "
                 f"generator version?); regenerating")
            (root / COMPLETE).unlink(missing_ok=True)
        for stale in cache_root.glob(f".{root.name}.*.tmp"):   # a killed generator's half world (we hold the lock)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{root.name}.", suffix=".tmp"))
        try:
            synthesize(profile, seed, tmp, progress=progress)
            (tmp / COMPLETE).write_text(json.dumps({"profile": profile, "seed": seed, "files": _record(tmp)},
                                                   indent=1))
            remove_tree(root)  # a stale directory without the marker (e.g. copied by hand): replace it
            os.replace(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root
