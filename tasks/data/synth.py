"""The synthetic world: a seeded generator of native files with the real shapes and task structure.

Generative model (equations and knobs in WORLD.md). For clip i with events e (class k_e, seconds [on_e, off_e)):

    s_e       = mu_{k_e} + sigma_inst * eps_e                 instance semantics, shared by every modality   (W1)
    c_i       ~ N(0, sigma_scene^2 I)                          scene: shared by all modalities, not the event (W2)
    n_i^m     ~ N(0, sigma_nuis^2 I)                           private nuisance of modality m                (W3)
    sem_t^m   = sum_e a_{e,t}^m s_e   (+ sigma_bg * noise where no event is active)                         (W4)
    u_t^m     = [ sem_t^m ; c_i ; n_i^m + p^m + sigma_jit * xi_t^m ]                                         (W5)
    x_t^m     = f_m(u_t^m)            fixed random non-linear "sensor" per modality, shared by all datasets (W6)

a^A is the event timeline shifted by the clip's audio lag; video is computed per grid cell and only the cells
of an event's object box carry its semantics; p^m are fixed position codes (video cell, text token). Text tokens
of a class prompt carry the class prototype mu_k on its content words; captions carry the instance s_i and scene.

Everything is drawn from `numpy.random.default_rng([seed, ...])` streams keyed by dataset and block, so each file
is deterministic and independent of the others; features are generated and written block by block, so the
paper-size corpus never exists in memory. Version 3 files also store each clip's true factors (the noise-free
sem^m, c_i, n_i^m per second) as `latent/<modality>/<factor>`, for the oracle and the factor probes.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from benchmark import bounds
from benchmark.contracts import UserError

from .native import NativeWriter

# 2: float64 sensors rounded to FEATURE_STEP (bit-identical on every CPU); 3: + the `latent/` group (each clip's
# true per-second factors), test/val splits sized to be read and the calibrated nuisance (`_VERSION_3_KNOBS`;
# tasks/data/WORLD.md has the sweep). `--set version=2` still writes the version 2 worlds byte for byte.
GENERATOR_VERSION = 3
VERSIONS = (2, 3)
PROFILES = ("smoke", "default", "paper")
FACTORS = ("semantic", "scene", "nuisance")


# --------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Knobs:
    """Every number the generator uses. Written into each file's `generator` attribute."""

    version: int = 3                                 # generator version (VERSIONS): what a file holds, see above
    # sizes (clips; retrieval: items)
    n_pretrain: int = 4000
    n_ave: int = 2000
    ave_split: tuple[int, int, int] | None = None    # exact train/val/test counts (paper: 3339/402/402)
    n_avvp: int = 1200
    avvp_split: tuple[int, int, int] | None = None   # exact counts (version 3); None: 70/15/15 %
    n_ucf: int = 1000
    ucf_split: tuple[int, int, int] | None = None    # exact counts (version 3); None: 60/20/20 %
    n_vgg: int = 1000
    vgg_split: tuple[int, int, int] | None = None
    n_retrieval_vt: int = 500                        # video <-> caption pairs
    n_retrieval_at: int = 500                        # audio items, `captions_per_audio` captions each
    captions_per_audio: int = 5
    n_retrieval_av: int = 500
    seconds: int = 10                                # T
    tokens: int = 10                                 # L
    # widths of the "sensors"
    audio_dim: int = 128
    video_grid: int = 4                              # H = W of the cell grid the video sensor sees
    video_pooled: bool = True                        # store [T,C] (mean over cells) instead of [T,H,W,C]
    video_channels: int = 512
    text_dim: int = 768
    sensor_hidden: int = 96
    video_dtype: str = "float32"                     # storage dtype of video (float16 halves paper disk/IO)
    # class universe
    n_pretrain_classes: int = 141
    n_ave_classes: int = 28
    n_avvp_classes: int = 25
    n_ave_avvp_shared: int = 12
    n_ucf_vgg_classes: int = 16
    avvp_novel: int = 4                              # AVVP-only classes absent from pretraining (class overlap)
    ucf_vgg_novel: int = 0                           # UCF/VGG classes absent from pretraining
    # latent factors
    semantic_dim: int = 16
    scene_dim: int = 8
    nuisance_dim: int = 16
    instance_sigma: float = 0.5
    scene_sigma: float = 1.0
    nuisance_sigma: float = 2.0
    jitter_sigma: float = 0.5
    background_sigma: float = 0.5
    # time
    max_lag: int = 1
    lag_prob: float = 0.3
    event_min_seconds: int = 2
    avvp_events_mean: float = 2.0
    avvp_max_events: int = 4
    avvp_event_types: tuple[float, float, float] = (0.3, 0.2, 0.5)   # audio-only, visual-only, audio-visual
    object_side: tuple[float, float] = (0.4, 0.9)   # object box side as a fraction of the grid side
    # text
    prompt_content_prob: float = 0.6
    caption_scene_prob: float = 0.3
    # generation
    block_clips: int = 256

    def replace(self, **overrides: Any) -> "Knobs":
        names = {f.name: f for f in dataclasses.fields(self)}
        clean = {}
        for key, value in overrides.items():
            if key not in names:
                import difflib
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise UserError(f"unknown generator knob '{key}'{hint}")
            clean[key] = bounds.typed(key, value, getattr(self, key), str(names[key].type))
        return dataclasses.replace(self, **clean)

    def check(self) -> None:
        k = self
        problems = bounds.out_of_range(dataclasses.asdict(k), bounds.KNOB_BOUNDS)   # each knob's range first
        if k.object_side[0] > k.object_side[1]:
            problems.append(f"object_side {k.object_side} must be (smallest, largest)")
        if problems:
            raise UserError("generator knobs: " + "; ".join(problems))
        if k.n_ave_avvp_shared > min(k.n_ave_classes, k.n_avvp_classes):
            problems.append("n_ave_avvp_shared exceeds the AVE or AVVP class count")
        if k.n_ave_classes > k.n_pretrain_classes:
            problems.append("AVE classes must be a subset of the pretraining classes")
        if k.avvp_novel > k.n_avvp_classes - k.n_ave_avvp_shared:
            problems.append("avvp_novel exceeds the AVVP classes not shared with AVE")
        if k.n_avvp_classes - k.n_ave_avvp_shared - k.avvp_novel > k.n_pretrain_classes - k.n_ave_classes:
            problems.append("not enough pretraining classes outside AVE for AVVP")
        if k.ucf_vgg_novel > k.n_ucf_vgg_classes:
            problems.append("ucf_vgg_novel exceeds n_ucf_vgg_classes")
        if not 1 <= k.event_min_seconds <= k.seconds:
            problems.append("event_min_seconds must be in [1, seconds]")
        if k.avvp_max_events > k.n_avvp_classes:
            problems.append("avvp_max_events exceeds the AVVP class count")
        if k.video_dtype not in ("float16", "float32"):
            problems.append("video_dtype must be float16 or float32")
        for name in ("ave", "avvp", "ucf", "vgg"):
            split, n = getattr(k, f"{name}_split"), getattr(k, f"n_{name}")
            if split is not None and (len(split) != 3 or sum(split) != n or min(split) < 1):
                problems.append(f"{name}_split {split} must be three counts >= 1 summing to n_{name}={n}")
        if k.version not in VERSIONS:
            problems.append(f"version must be one of {', '.join(map(str, VERSIONS))}, got {k.version}")
        elif k.version < 3 and any(getattr(k, f) is not None for f in ("avvp_split", "ucf_split", "vgg_split")):
            problems.append("avvp_split, ucf_split and vgg_split need version=3")
        if min(k.n_pretrain, k.n_ave, k.n_avvp, k.n_ucf, k.n_vgg) < 3:
            problems.append("every classification dataset needs at least 3 clips (train/val/test)")
        if abs(sum(k.avvp_event_types) - 1) > 1e-6 or min(k.avvp_event_types) < 0:
            problems.append("avvp_event_types must be probabilities summing to 1")
        if problems:
            raise UserError("generator knobs: " + "; ".join(problems))


_PROFILE_KNOBS: dict[str, dict[str, Any]] = {
    # tests: seconds to generate; small widths, but a real 3x3 grid so the spatial video path is exercised
    "smoke": dict(n_pretrain=300, n_ave=200, n_avvp=120, n_ucf=100, n_vgg=100, n_retrieval_vt=50,
                  n_retrieval_at=40, n_retrieval_av=50, audio_dim=32, video_grid=3, video_pooled=False,
                  video_channels=16, text_dim=32, sensor_hidden=32, block_clips=128),
    # make bench: a few thousand pretraining clips, real audio width, pooled 512-d video, 768-d text
    "default": dict(),
    # the real sizes and widths; video stored as float16 (20 GB instead of 40 GB for the corpus)
    "paper": dict(n_pretrain=40000, n_ave=4143, ave_split=(3339, 402, 402), n_avvp=1849, n_ucf=1556, n_vgg=3518,
                  n_retrieval_vt=500, n_retrieval_at=1045, n_retrieval_av=1000, video_grid=7, video_pooled=False,
                  video_dtype="float16", block_clips=64),
}


# Version 3's test sets, on top of a profile (the train splits stay as they were): one test clip is <= 0.1 point
# of AVE and of UCF<->VGG accuracy (1000 test clips each way) and AVVP has 5x the test seconds of version 2
# (900 clips x 10 s against 180); the val splits match the test splits, since heads are selected on them. The
# nuisance is the calibrated one (WORLD.md, "Calibrating version 3": the measured lever on convergence speed).
_VERSION_3_KNOBS: dict[str, dict[str, Any]] = {
    "default": dict(nuisance_sigma=0.75, n_ave=3612, ave_split=(1612, 1000, 1000), n_avvp=2640,
                    avvp_split=(840, 900, 900),
                    n_ucf=2600, ucf_split=(600, 1000, 1000), n_vgg=2600, vgg_split=(600, 1000, 1000)),
}
# Knobs that version 2 files do not record (they did not exist), so a version 2 world keeps its bytes
_SINCE_VERSION_3 = ("version", "avvp_split", "ucf_split", "vgg_split")


def profile_knobs(profile: str, **overrides: Any) -> Knobs:
    """The profile's knobs; with `version=3` also version 3's split sizes, then `overrides` on top (so the
    calibration of a version 3 world sets e.g. `nuisance_sigma` without restating the sizes)."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    knobs = Knobs().replace(**_PROFILE_KNOBS[profile])
    if knobs.replace(**overrides).version >= 3:
        knobs = knobs.replace(**_VERSION_3_KNOBS.get(profile, {}))
    knobs = knobs.replace(**overrides)
    knobs.check()
    return knobs


def recorded_knobs(k: Knobs) -> dict[str, Any]:
    """The knobs written into a file's attrs and world.json (version 2: those version 2 had)."""
    out = dataclasses.asdict(k)
    if k.version < 3:
        for name in _SINCE_VERSION_3:
            out.pop(name)
    return out


# --------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetSpec:
    stream: int                          # rng stream id (fixed forever: keeps files independent of each other)
    modalities: tuple[str, ...]
    classes: str                         # which class list
    events: str                          # "single" (one contiguous AV event) | "multi" (AVVP) | "full" (whole clip)
    size: str                            # Knobs field holding N
    splits: tuple[float, float, float] | None = (0.7, 0.15, 0.15)
    labels: tuple[str, ...] = ("all", "clip")


DATASETS: dict[str, DatasetSpec] = {
    "pretrain": DatasetSpec(1, ("audio", "video", "text"), "pretrain", "single", "n_pretrain", (0.6, 0.2, 0.2)),
    "ave": DatasetSpec(2, ("audio", "video"), "ave", "single", "n_ave", (0.806, 0.097, 0.097)),
    "avvp": DatasetSpec(3, ("audio", "video"), "avvp", "multi", "n_avvp", labels=("audio", "video", "clip")),
    "ucf": DatasetSpec(4, ("video",), "ucf_vgg", "full", "n_ucf", (0.6, 0.2, 0.2)),
    "vgg": DatasetSpec(5, ("audio",), "ucf_vgg", "full", "n_vgg", (0.6, 0.2, 0.2)),
    "retrieval_vt": DatasetSpec(6, ("video", "text"), "pretrain", "single", "n_retrieval_vt", None, ()),
    "retrieval_at": DatasetSpec(7, ("audio", "text"), "pretrain", "single", "n_retrieval_at", None, ()),
    "retrieval_av": DatasetSpec(8, ("audio", "video"), "pretrain", "single", "n_retrieval_av", None, ()),
}


# --------------------------------------------------------------------------- the universe (shared by all files)
def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


# Stored feature values are multiples of this step. The sensors run in float64 and round onto the grid, so the
# ulp-level differences between BLAS kernels / SIMD transcendentals of different CPUs (AVX2 vs AVX-512, OpenBLAS
# core types) cannot reach the stored arrays: a value moves only if it sits within ~1e-15 of a grid midpoint
# (expected flips over a whole default world: < 1e-3). 2^-12 is far below any feature scale that matters.
FEATURE_STEP = 2.0 ** -12


def to_grid(x: np.ndarray) -> np.ndarray:
    """float64 values rounded to the storage grid, as float32 (exact: |x| < 2^12 has room for the step)."""
    return (np.rint(np.asarray(x, dtype=np.float64) / FEATURE_STEP) * FEATURE_STEP).astype(np.float32)


@dataclass
class Sensor:
    """x = out(W2 act(W1 u + b1) + b2): a fixed random non-linear map from the latent u to a feature width.
    Computed in float64 and rounded to `FEATURE_STEP` (a world must be bit-identical on every CPU)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    kind: str

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return to_grid(self._raw(np.asarray(u, dtype=np.float64)))

    def _raw(self, u: np.ndarray) -> np.ndarray:
        h = u @ self.w1 + self.b1
        if self.kind == "audio":      # smooth, signed (VGGish embeddings are signed)
            return np.tanh(h) @ self.w2 + self.b2
        if self.kind == "video":      # rectified: non-negative and partly zero, like conv pool5 activations
            return np.maximum(np.tanh(h) @ self.w2 + self.b2, 0.0)
        y = _gelu(h) @ self.w2 + self.b2   # text: GELU then per-token layer norm, like transformer outputs
        y -= y.mean(-1, keepdims=True)
        y /= np.sqrt((y ** 2).mean(-1, keepdims=True) + 1e-6)
        return y


@dataclass
class Universe:
    knobs: Knobs
    names: list[str]
    prototypes: np.ndarray               # [U, ds]  mu_k
    prompt_content: np.ndarray           # [U, L] bool  content words of each class prompt
    prompt_phrasing: np.ndarray          # [U, dn]  the prompt's private "wording"
    token_codes: np.ndarray              # [L, dn]
    cell_codes: np.ndarray               # [g, g, dn]
    sensors: dict[str, Sensor]
    class_sets: dict[str, np.ndarray] = field(default_factory=dict)   # name -> sorted universe ids

    @property
    def latent_dim(self) -> int:
        k = self.knobs
        return k.semantic_dim + k.scene_dim + k.nuisance_dim


def build_universe(seed: int, k: Knobs) -> Universe:
    """Class prototypes, class lists per dataset, prompts and the three sensors (stream 0)."""
    rng = np.random.default_rng([seed, 0])
    n_universe = k.n_pretrain_classes + k.avvp_novel + k.ucf_vgg_novel
    names = [f"class_{u:03d}" for u in range(n_universe)]
    prototypes = rng.standard_normal((n_universe, k.semantic_dim))
    content = rng.random((n_universe, k.tokens)) < k.prompt_content_prob
    content[:, 0] = True                 # every prompt names its class at least once
    phrasing = k.nuisance_sigma * rng.standard_normal((n_universe, k.nuisance_dim))
    token_codes = rng.standard_normal((k.tokens, k.nuisance_dim))
    cell_codes = rng.standard_normal((k.video_grid, k.video_grid, k.nuisance_dim))

    pretrain = np.arange(k.n_pretrain_classes)
    novel = np.arange(k.n_pretrain_classes, n_universe)
    ave = rng.choice(pretrain, k.n_ave_classes, replace=False)
    others = np.setdiff1d(pretrain, ave)
    n_avvp_seen = k.n_avvp_classes - k.n_ave_avvp_shared - k.avvp_novel
    avvp = np.concatenate([rng.choice(ave, k.n_ave_avvp_shared, replace=False),
                           rng.choice(others, n_avvp_seen, replace=False), novel[:k.avvp_novel]])
    ucf_vgg = np.concatenate([rng.choice(pretrain, k.n_ucf_vgg_classes - k.ucf_vgg_novel, replace=False),
                              novel[k.avvp_novel:k.avvp_novel + k.ucf_vgg_novel]])
    class_sets = {"pretrain": pretrain, "ave": np.sort(ave), "avvp": np.sort(avvp), "ucf_vgg": np.sort(ucf_vgg)}

    d_u = k.semantic_dim + k.scene_dim + k.nuisance_dim
    widths = {"audio": k.audio_dim, "video": k.video_channels, "text": k.text_dim}
    sensors = {}
    for m in ("audio", "video", "text"):
        h, d = k.sensor_hidden, widths[m]
        w1 = rng.standard_normal((d_u, h)) / np.sqrt(d_u)
        b1 = 0.5 * rng.standard_normal(h)
        w2 = rng.standard_normal((h, d)) / np.sqrt(h)
        b2 = 0.1 * rng.standard_normal(d)
        sensors[m] = Sensor(w1, b1, w2, b2, kind=m)
    return Universe(k, names, prototypes, content, phrasing, token_codes, cell_codes, sensors, class_sets)


# --------------------------------------------------------------------------- clip-level draws
@dataclass
class Events:
    """Clip-level latent draws for one dataset, `E` event slots per clip (unused slots have cls = -1)."""

    cls: np.ndarray          # [N, E] universe class id or -1
    on: np.ndarray           # [N, E] first second (annotation timeline)
    off: np.ndarray          # [N, E] one past the last second
    audible: np.ndarray      # [N, E] bool
    visible: np.ndarray      # [N, E] bool
    sem: np.ndarray          # [N, E, ds] instance semantics s_e (W1)
    box: np.ndarray          # [N, E, g, g] bool object cells
    lag: np.ndarray          # [N] audio lag in seconds (audio timeline = annotation shifted by lag)
    scene: np.ndarray        # [N, dc] (W2)
    nuisance: dict[str, np.ndarray]   # modality -> [N, dn] (W3)

    def active(self, sl: slice) -> np.ndarray:
        """[B, E, T] bool: event e annotated at second t."""
        t = np.arange(self.seconds)
        return (self.on[sl, :, None] <= t) & (t < self.off[sl, :, None]) & (self.cls[sl, :, None] >= 0)

    seconds: int = 10


def draw_events(rng: np.random.Generator, n: int, classes: np.ndarray, kind: str, uni: Universe) -> Events:
    k, T, g = uni.knobs, uni.knobs.seconds, uni.knobs.video_grid
    if kind == "multi":
        E = k.avvp_max_events
        count = np.clip(1 + rng.poisson(k.avvp_events_mean - 1, n), 1, E)
        order = np.argsort(rng.random((n, len(classes))), axis=1)[:, :E]      # distinct classes per clip
        cls = np.where(np.arange(E) < count[:, None], classes[order], -1)
        on = rng.integers(0, T, (n, E))
        off = on + 1 + np.floor(rng.random((n, E)) * (T - on)).astype(np.int64)
        kinds = rng.choice(3, size=(n, E), p=list(k.avvp_event_types))        # 0 audio, 1 visual, 2 both
        audible, visible = kinds != 1, kinds != 0
    else:
        E = 1
        cls = classes[rng.integers(0, len(classes), (n, 1))]
        if kind == "full":
            on, off = np.zeros((n, 1), np.int64), np.full((n, 1), T, np.int64)
        else:
            length = rng.integers(k.event_min_seconds, T + 1, (n, 1))
            on = np.floor(rng.random((n, 1)) * (T - length + 1)).astype(np.int64)
            off = on + length
        audible = visible = np.ones((n, 1), bool)
    sem = uni.prototypes[np.maximum(cls, 0)] + k.instance_sigma * rng.standard_normal((n, E, k.semantic_dim))
    lo, hi = (max(1, int(round(f * g))) for f in k.object_side)
    hi = max(lo, min(hi, g))
    side = rng.integers(lo, hi + 1, (n, E, 2))
    corner = np.floor(rng.random((n, E, 2)) * (g - side + 1)).astype(np.int64)
    cells = np.arange(g)
    rows = (corner[..., :1] <= cells) & (cells < corner[..., :1] + side[..., :1])          # [n, E, g]
    cols = (corner[..., 1:] <= cells) & (cells < corner[..., 1:] + side[..., 1:])
    box = rows[..., :, None] & cols[..., None, :]
    shift = rng.integers(1, k.max_lag + 1, n) * rng.choice([-1, 1], n) if k.max_lag > 0 else np.zeros(n, int)
    lag = np.where(rng.random(n) < k.lag_prob, shift, 0)
    scene = k.scene_sigma * rng.standard_normal((n, k.scene_dim))
    nuisance = {m: k.nuisance_sigma * rng.standard_normal((n, k.nuisance_dim)) for m in ("audio", "video", "text")}
    return Events(cls, on, off, audible, visible, sem, box, lag.astype(np.int64), scene, nuisance, seconds=T)


# --------------------------------------------------------------------------- features (one block of clips)
def audio_activity(ev: Events, sl: slice) -> np.ndarray:
    """[B, E, T] bool: event e sounds at second t (its audible annotation shifted by the clip's lag)."""
    T = ev.seconds
    act = ev.active(sl) & ev.audible[sl, :, None]
    src = np.arange(T) - ev.lag[sl, None]                                                # [B, T]
    inside = (src >= 0) & (src < T)
    return np.take_along_axis(act, np.clip(src, 0, T - 1)[:, None, :], axis=2) & inside[:, None, :]


def audio_block(ev: Events, sl: slice, uni: Universe, rng: np.random.Generator) -> np.ndarray:
    """[B, T, Da] (W4-W6) with the audio timeline shifted by the clip lag."""
    k, T = uni.knobs, uni.knobs.seconds
    act = audio_activity(ev, sl)                                                         # [B, E, T]
    sem = np.einsum("bet,bed->btd", act, ev.sem[sl])
    B = sem.shape[0]
    silent = ~act.any(1)
    sem += silent[..., None] * k.background_sigma * rng.standard_normal((B, T, k.semantic_dim))
    nuis = ev.nuisance["audio"][sl, None] + k.jitter_sigma * rng.standard_normal((B, T, k.nuisance_dim))
    u = np.concatenate([sem, np.broadcast_to(ev.scene[sl, None], (B, T, k.scene_dim)), nuis], -1)
    return uni.sensors["audio"](u)


def video_block(ev: Events, sl: slice, uni: Universe, rng: np.random.Generator) -> np.ndarray:
    """[B, T, g, g, C] (or pooled [B, T, C]): each visible event's semantics fill its object's cells (W4-W6)."""
    k, T, g = uni.knobs, uni.knobs.seconds, uni.knobs.video_grid
    act = (ev.active(sl) & ev.visible[sl, :, None]).astype(np.float64)                  # [B, E, T]
    box = ev.box[sl].astype(np.float64)                                                  # [B, E, g, g]
    sem = np.einsum("bet,beij,bed->btijd", act, box, ev.sem[sl])
    covered = np.einsum("bet,beij->btij", act, box) > 0
    B = sem.shape[0]
    sem += (~covered)[..., None] * k.background_sigma * rng.standard_normal((B, T, g, g, k.semantic_dim))
    nuis = (ev.nuisance["video"][sl, None, None, None] + uni.cell_codes
            + k.jitter_sigma * rng.standard_normal((B, T, g, g, k.nuisance_dim)))
    scene = np.broadcast_to(ev.scene[sl, None, None, None], (B, T, g, g, k.scene_dim))
    x = uni.sensors["video"]._raw(np.concatenate([sem, scene, nuis], -1))
    return to_grid(x.mean((2, 3)) if k.video_pooled else x)


def text_latents(sem: np.ndarray, content: np.ndarray, scene: np.ndarray, phrasing: np.ndarray,
                 tokens: int) -> dict[str, np.ndarray]:
    """Per-token factors {semantic [M, L, ds], scene [M, L, dc], nuisance [M, L, dn]} of sentences with semantics
    [M, ds], content-word masks [M, L], scene words [M, L, dc] (zero for class prompts) and wording [M, dn]."""
    return {"semantic": content[..., None] * sem[:, None], "scene": scene,
            "nuisance": np.broadcast_to(phrasing[:, None], (len(phrasing), tokens, phrasing.shape[-1]))}


def text_tokens(latent: dict[str, np.ndarray], uni: Universe) -> np.ndarray:
    """[M, L, Dt] from `text_latents`: token l = f_T([content_l * sem ; scene_l ; wording + token_code_l])."""
    u = np.concatenate([latent["semantic"], latent["scene"], latent["nuisance"] + uni.token_codes], -1)
    return uni.sensors["text"](u)


def prompt_latents(uni: Universe, class_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The factors of one fixed prompt per class (as the real corpus: every clip of a class gets its prompt)."""
    k = uni.knobs
    zeros = np.zeros((len(class_ids), k.tokens, k.scene_dim))
    return text_latents(uni.prototypes[class_ids], uni.prompt_content[class_ids], zeros,
                        uni.prompt_phrasing[class_ids], k.tokens)


def class_prompts(uni: Universe, class_ids: np.ndarray) -> np.ndarray:
    """[K, L, Dt]: the class prompts' tokens."""
    return text_tokens(prompt_latents(uni, class_ids), uni)


def caption_latents(ev: Events, item: np.ndarray, rng: np.random.Generator, uni: Universe) -> dict[str, np.ndarray]:
    """The factors of instance-level captions of clips `item` [M]: the clip's event semantics, some scene words."""
    k = uni.knobs
    m = len(item)
    content = rng.random((m, k.tokens)) < k.prompt_content_prob
    content[:, 0] = True
    scene_words = (rng.random((m, k.tokens)) < k.caption_scene_prob)[..., None] * ev.scene[item, None]
    wording = k.nuisance_sigma * rng.standard_normal((m, k.nuisance_dim))
    return text_latents(ev.sem[item, 0], content, scene_words, wording, k.tokens)


def captions(ev: Events, item: np.ndarray, rng: np.random.Generator, uni: Universe) -> np.ndarray:
    """[M, L, Dt] instance-level captions of clips `item` [M]."""
    return text_tokens(caption_latents(ev, item, rng, uni), uni)


def clip_latents(ev: Events, sl: slice, modality: str) -> dict[str, np.ndarray]:
    """The true per-second factors of audio or video clips `sl`: {semantic [B, T, ds] (the sounding resp. visible
    events' instance semantics, without the background noise), scene [B, T, dc], nuisance [B, T, dn] (the clip's
    private nuisance, without its per-second jitter)}: what a perfect encoder of each factor would output."""
    act = audio_activity(ev, sl) if modality == "audio" else ev.active(sl) & ev.visible[sl, :, None]
    semantic = np.einsum("bet,bed->btd", act.astype(np.float64), ev.sem[sl])
    T = semantic.shape[1]
    scene, nuisance = ev.scene[sl], ev.nuisance[modality][sl]
    return {"semantic": semantic, "scene": np.broadcast_to(scene[:, None], (len(scene), T, scene.shape[-1])),
            "nuisance": np.broadcast_to(nuisance[:, None], (len(nuisance), T, nuisance.shape[-1]))}


# --------------------------------------------------------------------------- labels and splits
def label_matrix(ev: Events, local: np.ndarray, n_classes: int, modality: str | None) -> np.ndarray:
    """[N, T, C+1] uint8 multi-hot on the annotation timeline; background column where nothing is active.

    `local` maps universe class id -> the dataset's class index (-1 for classes it does not have)."""
    n = len(ev.cls)
    act = ev.active(slice(None))
    if modality == "audio":
        act = act & ev.audible[..., None]
    elif modality == "video":
        act = act & ev.visible[..., None]
    out = np.zeros((n, ev.seconds, n_classes + 1), np.uint8)
    col = np.where(ev.cls >= 0, local[np.maximum(ev.cls, 0)], n_classes)               # [N, E], unused -> bg
    rows, slots, secs = np.nonzero(act)
    out[rows, secs, col[rows, slots]] = 1
    out[..., n_classes] = ~out[..., :n_classes].any(-1)
    return out


def clip_labels(ev: Events, local: np.ndarray) -> np.ndarray:
    """[N] int: the class of the event with the most annotated seconds (the only event in single-event sets)."""
    dur = np.where(ev.cls >= 0, ev.off - ev.on, -1) * (ev.audible.astype(int) + ev.visible.astype(int))
    return local[ev.cls[np.arange(len(ev.cls)), dur.argmax(1)]]


def split_indices(rng: np.random.Generator, n: int, fractions, counts=None) -> dict[str, np.ndarray]:
    perm = rng.permutation(n)
    if counts is None:
        n_val = max(1, int(round(fractions[1] * n)))
        n_test = max(1, int(round(fractions[2] * n)))
        counts = (n - n_val - n_test, n_val, n_test)
    a, b = counts[0], counts[0] + counts[1]
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


# --------------------------------------------------------------------------- writing
def _feature_shape(m: str, n: int, k: Knobs) -> tuple[int, ...]:
    if m == "audio":
        return (n, k.seconds, k.audio_dim)
    if m == "video":
        tail = (k.video_channels,) if k.video_pooled else (k.video_grid, k.video_grid, k.video_channels)
        return (n, k.seconds, *tail)
    return (n, k.tokens, k.text_dim)


def generate_dataset(name: str, uni: Universe, seed: int, out: Path, progress=None) -> Path:
    """Write `<out>/<name>.h5` block by block (memory: one block of clips)."""
    spec, k = DATASETS[name], uni.knobs
    classes = uni.class_sets[spec.classes]
    local = np.full(len(uni.names), -1, np.int64)
    local[classes] = np.arange(len(classes))
    n = getattr(k, spec.size)
    rng = np.random.default_rng([seed, spec.stream, 0])
    ev = draw_events(rng, n, classes, spec.events, uni)
    names = [uni.names[u] for u in classes]
    generator = {"generator": "unibench.synth", "generator_version": k.version, "seed": seed,
                 "dataset": name, "events": spec.events, "class_ids": classes.tolist(),
                 "storage_dtype": {m: (k.video_dtype if m == "video" else "float32") for m in spec.modalities},
                 "knobs": recorded_knobs(k)}
    extra: dict[str, Any] = {}
    if name == "pretrain":
        extra["prompts"] = [f"a video of {c} with the sound it makes" for c in names]
    text_n = n * k.captions_per_audio if name == "retrieval_at" else n
    latents = k.version >= 3
    widths = {"semantic": k.semantic_dim, "scene": k.scene_dim, "nuisance": k.nuisance_dim}
    path = out / f"{name}.h5"
    with NativeWriter(path, dataset=name, classes=names, generator=generator, **extra) as w:
        for m in spec.modalities:
            shape = _feature_shape(m, text_n if m == "text" else n, k)
            w.features(m, shape, k.video_dtype if m == "video" else "float32")
            for factor in FACTORS if latents else ():
                w.latent(m, factor, (*shape[:2], widths[factor]))
        prompt_factors = prompt_latents(uni, classes) if name == "pretrain" else None
        prompts = text_tokens(prompt_factors, uni) if prompt_factors is not None else None
        starts = range(0, n, k.block_clips)
        blocks = progress(starts, description=f"{name}.h5", total=len(starts)) if progress else starts
        for b, start in enumerate(blocks):
            sl = slice(start, min(start + k.block_clips, n))
            brng = np.random.default_rng([seed, spec.stream, 1, b])
            if "audio" in spec.modalities:
                w.write("audio", start, audio_block(ev, sl, uni, brng))
            if "video" in spec.modalities:
                w.write("video", start, video_block(ev, sl, uni, brng))
            for m in ("audio", "video") if latents else ():
                if m in spec.modalities:
                    for factor, rows in clip_latents(ev, sl, m).items():
                        w.write(f"latent/{m}/{factor}", start, rows)
            if "text" in spec.modalities:
                items = np.arange(sl.start, sl.stop)
                per = 1
                if prompts is not None:
                    rows = local[ev.cls[sl, 0]]
                    tokens, factors = prompts[rows], {f: v[rows] for f, v in prompt_factors.items()}
                else:
                    per = k.captions_per_audio if name == "retrieval_at" else 1
                    factors = caption_latents(ev, np.repeat(items, per), brng, uni)
                    tokens = text_tokens(factors, uni)
                w.write("text", start * per, tokens)
                for factor, rows in factors.items() if latents else ():
                    w.write(f"latent/text/{factor}", start * per, rows)
        for label in spec.labels:
            if label == "clip":
                w.labels("clip", clip_labels(ev, local))
            else:
                w.labels(label, label_matrix(ev, local, len(classes), None if label == "all" else label))
        if spec.splits is not None:
            counts = getattr(k, f"{name}_split", None)
            for s, idx in split_indices(rng, n, spec.splits, counts).items():
                w.split(s, idx)
        else:
            w.split("test", np.arange(n))
            a, b = spec.modalities
            per = k.captions_per_audio if name == "retrieval_at" else 1
            w.pairs(f"{a}_{b}", np.stack([np.repeat(np.arange(n), per), np.arange(n * per)], 1))
    return path


def synthesize(profile: str, seed: int, out_dir: str | Path, progress: Callable[..., Iterable] | None = None,
               only: Iterable[str] | None = None, **overrides: Any) -> Path:
    """Write a whole synthetic world (or the datasets in `only`) into `out_dir`; returns `out_dir`.

    `overrides` change generator knobs (e.g. `scene_sigma=0`); they are recorded in every file's attrs."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"world seed must be a non-negative integer, got {seed!r}")
    knobs = profile_knobs(profile, **overrides)
    names = list(DATASETS) if only is None else list(only)
    for name in names:
        if name not in DATASETS:
            raise UserError(f"unknown synthetic dataset '{name}' (known: {', '.join(DATASETS)})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    uni = build_universe(int(seed), knobs)
    for name in names:
        generate_dataset(name, uni, int(seed), out, progress)
    meta = {"profile": profile, "seed": int(seed), "datasets": names, "knobs": recorded_knobs(knobs)}
    (out / "world.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
