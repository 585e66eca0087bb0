"""Fixtures for the task tests: a tiny hand-built world in the native HDF5 format and toy encoders.

The world is built here with h5py (not by the synthetic generator) so the tests control exactly what a
perfect encoder can know: every per-second feature *is* the semantic label, one-hot over a class universe
shared by all files (names `class0..class9`; width 11 = 10 classes + background), identical in every modality.
So the identity map is a perfect encoder, and an encoder returning noise carries no label information.
"""
from __future__ import annotations

import sys
from pathlib import Path

# tests are grouped by layer (benchmark/, methods/, tasks/, data/, e2e/); the shared helpers (contract_checks, this
# conftest) and a few test modules are imported by name from other folders, so every folder is importable
_TESTS = Path(__file__).resolve().parent
for _folder in (_TESTS, *(p for p in sorted(_TESTS.iterdir()) if p.is_dir() and p.name not in ("fixtures",))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

import h5py
import numpy as np
import pytest
import torch

from benchmark.contracts import Pretrained, RunContext, UserError

@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every model in the tests is tiny: one intra-op thread is faster, and far faster when the 2 cores are shared
    (measured 10-40x); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


UNIVERSE = [f"class{i}" for i in range(10)]
WIDTH = len(UNIVERSE) + 1          # one-hot over the universe + background
T = 10
# file -> (class names by universe index, clips, modalities); class sets overlap by name as in the real data:
# ave/avvp share class3..class5, ucf/vgg share class2..class4.
CLASSIFICATION = {
    "ave": (range(0, 6), 360, ("audio", "video")),
    "avvp": (range(3, 8), 360, ("audio", "video")),
    "ucf": (range(0, 5), 480, ("video",)),
    "vgg": (range(2, 8), 600, ("audio",)),
}


def _write(path: Path, dataset: str, classes, arrays: dict, splits: dict | None) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        for name, idx in (splits or {}).items():
            f.create_dataset(f"split/{name}", data=np.asarray(idx, dtype=np.int64))
        f.attrs["classes"] = [str(c) for c in classes]
        f.attrs["dataset"] = dataset
        f.attrs["format_version"] = 1


def _splits(rng, n):
    perm = rng.permutation(n)
    a, b = n // 2, n // 2 + n // 6
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def _segment(rng):
    """A random contiguous [start, end) of 2..T seconds."""
    length = int(rng.integers(2, T + 1))
    start = int(rng.integers(0, T - length + 1))
    return start, start + length


def _frames_to_features(frames: np.ndarray, universe_idx: list[int]) -> np.ndarray:
    """`[N, T, C+1]` file-indexed labels -> `[N, T, WIDTH]` universe-indexed features (background last)."""
    feats = np.zeros(frames.shape[:2] + (WIDTH,), np.float32)
    feats[..., universe_idx] = frames[..., :-1]
    feats[..., -1] = frames[..., -1]
    return feats


def build_world(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, (members, n, modalities) in CLASSIFICATION.items():
        members = list(members)
        c = len(members)
        clip = rng.integers(0, c, size=n)
        arrays = {"labels/clip": clip}
        if name == "avvp":   # separate audio / visual events: audio-only, visual-only or both, per segment
            frames = {m: np.zeros((n, T, c + 1), np.float32) for m in modalities}
            for i in range(n):
                for _ in range(int(rng.integers(1, 3))):
                    start, end = _segment(rng)
                    for m in [("audio",), ("video",), ("audio", "video")][int(rng.integers(0, 3))]:
                        frames[m][i, start:end, clip[i]] = 1
            for m in modalities:
                frames[m][..., -1] = frames[m][..., :-1].max(-1) == 0
                arrays[f"labels/{m}"] = frames[m]
                arrays[m] = _frames_to_features(frames[m], members)
        else:                # one event per clip (AVE: a segment; UCF/VGG: the whole clip)
            frames = np.zeros((n, T, c + 1), np.float32)
            for i in range(n):
                start, end = _segment(rng) if name == "ave" else (0, T)
                frames[i, :, -1] = 1
                frames[i, start:end, clip[i]], frames[i, start:end, -1] = 1, 0
            arrays["labels/all"] = frames
            for m in modalities:
                arrays[m] = _frames_to_features(frames, members)
        _write(root / f"{name}.h5", name, [UNIVERSE[k] for k in members], arrays, _splits(rng, n))

    # retrieval: an item's features are its instance vector repeated over time, identical across a pair;
    # captions are zero-padded after a random number of tokens (padding must not enter the pooled vector).
    def items(n):
        return np.repeat(rng.standard_normal((n, 1, WIDTH)).astype(np.float32), T, axis=1)

    def padded(x):
        x = x.copy()
        for i in range(len(x)):
            x[i, int(rng.integers(3, T + 1)):] = 0
        return x

    vt = items(60)
    _write(root / "retrieval_vt.h5", "retrieval_vt", [], {"video": vt, "text": padded(vt),
           "pairs/video_text": np.stack([np.arange(60)] * 2, 1)}, {"test": np.arange(60)})
    at = items(40)
    caption_of = np.repeat(np.arange(40), 5)        # caption j describes audio j // 5
    _write(root / "retrieval_at.h5", "retrieval_at", [], {"audio": at, "text": padded(at[caption_of]),
           "pairs/audio_text": np.stack([caption_of, np.arange(200)], 1)}, {"test": np.arange(40)})
    av = items(60)
    _write(root / "retrieval_av.h5", "retrieval_av", [], {"audio": av, "video": av,
           "pairs/audio_video": np.stack([np.arange(60)] * 2, 1)}, {"test": np.arange(60)})
    return root


# --------------------------------------------------------------------------- reader
class _StandInFile:
    """The Reader API of the brief, reduced to what the tasks call (used until `tasks.data` exists)."""

    def __init__(self, path: Path):
        self.f = h5py.File(path, "r")
        self.modalities = tuple(m for m in ("audio", "video", "text") if m in self.f)
        self.classes = [str(c) for c in self.f.attrs["classes"]]
        self.attrs = dict(self.f.attrs)

    def n(self, modality):
        return self.f[modality].shape[0]

    def read(self, modality, idx=None):
        data = self.f[modality][()]
        return (data if idx is None else data[np.asarray(idx)]).astype(np.float32)

    def labels(self, name):
        return self.f[f"labels/{name}"][()]

    def split(self, name):
        return self.f[f"split/{name}"][()].astype(np.int64)

    def pairs(self, name):
        if f"pairs/{name}" not in self.f:
            raise UserError(f"no pairs/{name}")
        return self.f[f"pairs/{name}"][()].astype(np.int64)


class _StandInWorld:
    def __init__(self, root: Path):
        self.root = root

    def open(self, name):
        path = self.root / f"{name}.h5"
        if not path.exists():
            raise UserError(f"world {self.root} has no {name}.h5")
        return _StandInFile(path)


def open_tiny_world(root: Path):
    try:
        from tasks.data import open_world
    except ImportError:
        return _StandInWorld(root)
    return open_world(root)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    return open_tiny_world(build_world(tmp_path_factory.mktemp("tiny_world")))


# --------------------------------------------------------------------------- toy encoders
class ToyEncoder(Pretrained):
    """A Pretrained whose `encode` is a fixed function of the input (flattened to `[N, T, F]`)."""

    method = "toy"

    def __init__(self, fn, dim: int = WIDTH):
        self.fn, self._dim, self.calls = fn, dim, 0

    @property
    def dim(self):
        return self._dim

    @property
    def modalities(self):
        return ("audio", "video", "text")

    def encode(self, modality, x):
        self.calls += 1
        x = np.asarray(x, np.float32)
        return torch.from_numpy(np.ascontiguousarray(self.fn(x.reshape(x.shape[0], x.shape[1], -1))))


def perfect_encoder():
    """The identity: on the tiny world this is the true per-second semantic label."""
    return ToyEncoder(lambda x: x)


def random_encoder(seed: int = 123, dim: int = 16):
    """Fresh Gaussian noise for every clip: independent of the input and so of every label."""
    rng = np.random.default_rng(seed)
    return ToyEncoder(lambda x: rng.standard_normal((x.shape[0], x.shape[1], dim)).astype(np.float32), dim)


def constant_encoder():
    """A collapsed representation: every clip, every second, the same code."""
    return ToyEncoder(lambda x: np.ones((x.shape[0], x.shape[1], 4), np.float32), 4)


@pytest.fixture
def ctx(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return RunContext(scratch=scratch)
