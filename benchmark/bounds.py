"""Every size and count a user can hand the harness, bounded in one table and checked before anything runs.

Types and int64 ranges are the registry's business; this module stops values that are well-typed but would
allocate terabytes or loop for days (`codebook_size=1e9`, `epochs=1e9`, a file declaring N = 1e9 clips). Each
bound is (name, limit, why); the same names cover method, refiner and task options, synthetic-world knobs, CLI
counts and the shapes a feature file declares. On top of the per-value limits, `check_memory` compares a coarse
estimate of what a method and a task will hold at once (model + batch + codebook + encoded features) with the
memory this machine has, so values that pass one by one but not together fail with one `error:` line too.

Limits sit far above every preset and paper setting (the paper scale uses code_dim 256, codebook 400, 6 epochs);
they only exist to turn a typo or a hostile file into a message instead of an OOM kill or a hang.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from .contracts import UserError
from .yamlio import parse_number


@dataclass(frozen=True)
class Bound:
    name: str
    limit: int | float
    why: str
    low: int | float | None = None    # checked where the table's users have no range check of their own (knobs)


def _table(*bounds: Bound) -> dict[str, Bound]:
    return {b.name: b for b in bounds}


# options of methods, refiners and tasks (by option name, whichever entry carries it; list values per item)
OPTION_BOUNDS = _table(
    Bound("epochs", 10_000, "pretraining or head epochs; 10k passes of the smallest world already take days"),
    Bound("warm_epoch", 10_000, "an epoch index, bounded like epochs"),
    Bound("patience", 10_000, "head epochs without improvement; never more than the epochs bound"),
    Bound("lr_milestones", 10_000, "epoch indices of the schedule, bounded like epochs"),
    Bound("batch_size", 65_536, "clips per step; larger batches than any corpus only cost memory"),
    Bound("codebook_size", 1_048_576, "codes per codebook (2^20); the papers use 400"),
    Bound("codes", 1_048_576, "codes of the test-only tiny method, bounded like codebook_size"),
    Bound("code_dim", 65_536, "width of the shared code space; the papers use 256"),
    Bound("dim", 65_536, "width of a baseline's or the tiny method's representation"),
    Bound("hidden", 65_536, "width of a probe head or the VQ-VAE"),
    Bound("specific_dim", 65_536, "width of a private encoder"),
    Bound("att_dim", 65_536, "attention width"),
    Bound("text_hidden", 65_536, "width of the text encoder"),
    Bound("club_hidden", 65_536, "width of the CLUB estimators"),
    Bound("cpc_hidden", 65_536, "width of the CPC predictor"),
    Bound("trans_hidden", 65_536, "width of SimMMDG's translator"),
    Bound("proj_dims", 65_536, "widths of SimMMDG's projector"),
    Bound("video_widths", 65_536, "widths of the video encoder"),
    Bound("ffn", 262_144, "feed-forward width of a transformer layer"),
    Bound("layers", 64, "transformer layers"),
    Bound("cpc_layers", 64, "CPC predictor layers"),
    Bound("heads", 1_024, "attention heads"),
    Bound("levels", 64, "residual VQ levels (FSQ: levels per dim)"),
    Bound("rvq_levels", 64, "residual VQ levels of a preset"),
    Bound("chunks", 1_024, "TURN's code chunks"),
    Bound("cpc_horizon", 10_000, "CPC steps ahead; also checked against the corpus' T when it is known"),
    Bound("mi_steps", 10_000, "estimator steps per batch"),
    Bound("sinkhorn_iters", 10_000, "Sinkhorn iterations per batch"),
    Bound("dead_after", 2**40, "batches before an unused code is reset (a threshold, no cost)"),
    Bound("max_seconds", 100_000_000, "seconds CCA samples from the corpus"),
    Bound("n_random", 100_000, "random masks toc_recon scores"),
    Bound("q", 65_536, "dimensions TOC keeps; also checked against the code width"),
    Bound("sleep", 3_600, "seconds the test-only entries sleep"),
)

# knobs of the synthetic world (`data synth --set`, the profiles); counts are clips or items. `low` is checked
# here too (the generator's own `Knobs.check` holds the checks between knobs)
KNOB_BOUNDS = _table(
    *(Bound(n, 10_000_000, "clips or items of one dataset (the paper world has 40k)", 1) for n in (
        "n_pretrain", "n_ave", "n_avvp", "n_ucf", "n_vgg", "n_retrieval_vt", "n_retrieval_at", "n_retrieval_av")),
    *(Bound(f"{n}_split", 10_000_000, "clips per split", 1) for n in ("ave", "avvp", "ucf", "vgg")),
    Bound("captions_per_audio", 1_000, "captions per audio item", 1),
    Bound("seconds", 10_000, "steps per clip (T)", 1),
    Bound("tokens", 10_000, "tokens per caption (L)", 1),
    *(Bound(n, 65_536, "feature width", 1) for n in ("audio_dim", "video_channels", "text_dim", "sensor_hidden",
                                                    "semantic_dim", "scene_dim", "nuisance_dim")),
    Bound("video_grid", 64, "cells per side of the video grid", 1),
    *(Bound(n, 100_000, "classes", 1) for n in ("n_pretrain_classes", "n_ave_classes", "n_avvp_classes",
                                                "n_ucf_vgg_classes")),
    *(Bound(n, 100_000, "classes", 0) for n in ("n_ave_avvp_shared", "avvp_novel", "ucf_vgg_novel")),
    Bound("max_lag", 10_000, "seconds of A-V lag", 0),
    Bound("event_min_seconds", 10_000, "seconds", 1),
    Bound("avvp_max_events", 1_000, "events per AVVP clip", 1),
    Bound("avvp_events_mean", 1_000, "events per AVVP clip", 0),
    Bound("block_clips", 1_000_000, "clips generated per block", 1),
    *(Bound(n, 1_000.0, "a standard deviation", 0) for n in ("instance_sigma", "scene_sigma", "nuisance_sigma",
                                                             "jitter_sigma", "background_sigma")),
    *(Bound(n, 1.0, "a probability", 0) for n in ("lag_prob", "prompt_content_prob", "caption_scene_prob",
                                                  "avvp_event_types")),
    Bound("object_side", 1.0, "a fraction of the grid side", 0.01),
)

# what a feature file may declare (checked from the HDF5 header, before any array is read)
FILE_BOUNDS = _table(
    Bound("clips", 100_000_000, "N of one dataset"),
    Bound("steps", 10_000, "T of one clip"),
    Bound("values_per_clip", 2**26, "values of one clip (T x ... x D); 256 MB as float32"),
    Bound("classes", 100_000, "classes (labels' last axis minus background)"),
    Bound("pairs", 100_000_000, "retrieval pairs"),
    Bound("heatmap_codes", 8_192, "codes of a TOC heatmap: two L x L cosine matrices"),
    Bound("result_bytes", 64 * 2**20, "a cell's result.json (metrics and diagnostics; samples go to samples.npz)"),
)

# counts on the command line
CLI_BOUNDS = _table(
    Bound("seeds", 1_000, "seeds of one run (--seeds, a grid's seeds); each is a copy of every cell"),
    Bound("workers", 256, "worker processes"),
    Bound("threads", 1_024, "torch threads per process"),
)

ENCODE_BATCH = 256             # clips a task reads and encodes at once (tasks.common.ENCODE_BATCH; a test pins it)
MEMORY_FRACTION = 0.9          # an estimate above this share of the available memory is refused
FLOAT = 4                      # bytes per value the estimates count (float32)


def limit(name: str, table: Mapping[str, Bound] = OPTION_BOUNDS) -> int | float:
    return table[name].limit


def _too_big(value: Any, bound: Bound) -> Any:
    """The first item of `value` (a number or a list of them) above the bound, else None."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and item > bound.limit:
            return item
    return None


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_values(values: Mapping[str, Any], table: Mapping[str, Bound], owner: str, what: str = "option") -> None:
    """UserError naming the first bounded key of `values` above its limit."""
    for key, value in values.items():
        bound = table.get(key)
        if bound is None:
            continue
        bad = _too_big(value, bound)
        if bad is not None:
            raise UserError(f"{owner}: {what} '{key}' is {_fmt(bad)}, at most {_fmt(bound.limit)} ({bound.why})")


def out_of_range(values: Mapping[str, Any], table: Mapping[str, Bound]) -> list[str]:
    """Problems of `values` against both ends of the table's bounds (lists checked item by item)."""
    problems = []
    for key, value in values.items():
        bound = table.get(key)
        if bound is None:
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                continue
            if item > bound.limit:
                problems.append(f"{key} is {_fmt(item)}, at most {_fmt(bound.limit)} ({bound.why})")
            elif bound.low is not None and item < bound.low:
                problems.append(f"{key} is {_fmt(item)}, at least {_fmt(bound.low)} ({bound.why})")
            else:
                continue
            break
    return problems


def typed(key: str, value: Any, default: Any, annotation: str = "") -> Any:
    """A knob value (often a string from `--set`) as the type of its default: bool from true/false/yes/no/1/0,
    numbers in any YAML or exponent form (`1e3`), lists for tuple knobs (items typed by the annotation). Raises
    UserError naming the knob and what it expects."""

    def fail(want: str):
        return UserError(f"generator knob '{key}' expects {want}, got {value!r}"[:300])
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in ("true", "yes", "1", "on"):
            return True
        if word in ("false", "no", "0", "off"):
            return False
        raise fail("true or false")
    if isinstance(default, tuple) or default is None and "tuple" in annotation:
        if value is None or str(value).strip().lower() in ("none", "null"):
            if default is None:
                return None
            raise fail("a list")
        kind = int if "int" in annotation and "float" not in annotation else float
        size = annotation.count(kind.__name__)
        if not isinstance(value, (list, tuple)) or size and len(value) != size:
            raise fail(f"a list of {size or 'some'} numbers, e.g. [{','.join(['1'] * (size or 2))}]")
        return tuple(typed(key, v, kind(0)) for v in value)
    if isinstance(default, (int, float)):
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else parse_number(str(value))
        if number is None or isinstance(number, bool) or not math.isfinite(number):
            raise fail("a finite number" if isinstance(default, float) else "an integer")
        if isinstance(default, int):
            if number != int(number):
                raise fail("an integer")
            return int(number)
        return float(number)
    return value if isinstance(value, type(default)) else str(value)


def check_count(name: str, value: int, flag: str) -> None:
    """A CLI count (`--workers`, `--threads`) within CLI_BOUNDS."""
    bound = CLI_BOUNDS[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bound.limit:
        raise UserError(f"{flag} must be in [1, {bound.limit}] ({bound.why}), got {value!r}")


# --------------------------------------------------------------------------- memory
def available_bytes() -> int:
    """Memory this process may still use: MemAvailable (Linux), else physical memory; a cgroup limit if lower."""
    found = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if found is None:
        try:
            found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            found = 2**40
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            found = min(found, int(text))
    return found


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _int(settings: Mapping[str, Any], *keys: str, default: int = 0) -> int:
    for key in keys:
        value = settings.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def method_terms(settings: Mapping[str, Any], steps: int = 10, width_in: int = 768) -> dict[str, int]:
    """Bytes of the largest things a method holds, by the options that size them (a coarse lower estimate:
    parameters, Adam's two moments and gradients count 4x; activations of one batch through the widest layer)."""
    width = _int(settings, "code_dim", "dim")
    ffn = _int(settings, "ffn")
    layers = max(1, _int(settings, "layers", default=1))
    levels = _int(settings, "levels", default=1) if isinstance(settings.get("levels"), int) else 1
    codes = _int(settings, "codebook_size", "codes")
    batch = _int(settings, "batch_size")
    terms = {
        "codebook_size x code_dim": 3 * codes * width * max(1, levels) * FLOAT * 4,
        "code_dim x ffn x layers": 3 * layers * (4 * width * width + 2 * width * ffn + width * width_in) * FLOAT * 4,
        "batch_size x T x width": batch * steps * max(width, ffn, codes) * layers * FLOAT * 8,
    }
    return {k: v for k, v in terms.items() if v}


def task_terms(cfg: Mapping[str, Any], clips: int, steps: int, width: int) -> dict[str, int]:
    """Bytes a probe task holds: the encoded features of its dataset and the head."""
    hidden = _int(cfg, "hidden", default=width)
    return {k: v for k, v in {"encoded clips x T x width": 2 * clips * steps * width * FLOAT,
                              "hidden": 4 * (width * hidden + hidden * hidden) * FLOAT}.items() if v}


def check_memory(owner: str, terms: Mapping[str, int], available: int | None = None) -> None:
    """UserError when the estimate exceeds MEMORY_FRACTION of the available memory, naming the largest term."""
    total = sum(terms.values())
    available = available_bytes() if available is None else available
    if total > MEMORY_FRACTION * available:
        largest = max(terms, key=terms.get)
        raise UserError(f"{owner} needs about {gib(total)} of memory (mostly {largest}: {gib(terms[largest])}), "
                        f"more than the {gib(available)} available; choose smaller values")


# --------------------------------------------------------------------------- hooks
def check_method(method, settings: Mapping[str, Any]) -> None:
    """A method spec's sizes (`settings`: its preset applied) and refiners' against OPTION_BOUNDS, and its memory
    estimate. Called by `spec.validate_method` before the entries' own validators (which must not meet a huge
    value)."""
    owner = f"method '{method.base.name}'"
    check_values(settings, OPTION_BOUNDS, owner)
    for refiner in method.refiners:
        check_values(refiner.cfg, OPTION_BOUNDS, f"refiner '{refiner.name}'")
    check_memory(owner, method_terms(settings))


def check_task(task) -> None:
    check_values(task.component.cfg, OPTION_BOUNDS, f"task '{task.name}'")


def check_declared(path: Any, key: str, shape: tuple[int, ...], itemsize: int, available: int | None = None) -> None:
    """A feature file's dataset shape, read from its header: N, T, values per clip and total size bounded."""
    shape = tuple(int(s) for s in shape)
    owner = f"{path}: {key}"
    first = FILE_BOUNDS["pairs" if key.startswith("pairs/") else "clips"]
    if shape and shape[0] > first.limit:
        raise UserError(f"{owner}: declares {shape[0]} {first.name} (N), at most {first.limit} ({first.why})")
    if len(shape) > 1 and shape[1] > FILE_BOUNDS["steps"].limit:
        raise UserError(f"{owner}: declares T = {shape[1]} steps, at most {FILE_BOUNDS['steps'].limit}")
    per_clip = math.prod(shape[1:]) if len(shape) > 1 else 1
    if per_clip > FILE_BOUNDS["values_per_clip"].limit:
        raise UserError(f"{owner}: declares {per_clip} values per clip {list(shape[1:])}, at most "
                        f"{FILE_BOUNDS['values_per_clip'].limit}")
    total = math.prod(shape) * itemsize
    available = available_bytes() if available is None else available
    if key.startswith("labels/") and total > MEMORY_FRACTION * available:
        raise UserError(f"{owner}: declares {list(shape)} ({gib(total)}), more than the {gib(available)} of memory "
                        f"available to read it")
