"""What every registered method, refiner and task must do, as plain functions over a registry `Entry`.

`test_contracts.py` runs them over the whole registry (so a new entry is checked without editing a list), and
the throwaway-entry test runs them on a method and a task written to a temp folder. Budgets are tiny: a method
trains one epoch on a 40-clip paired corpus, a task trains heads for one epoch on the tiny world of conftest.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from benchmark import registry, spec
from benchmark.contracts import RunContext
from methods.base import ArrayCorpus

# widths for a smoke pretraining: card options where the card has them, else settings that bypass the card (as a
# scale preset would); an entry ignores what it does not read
TINY = {"code_dim": 16, "codebook_size": 32, "batch_size": 32, "layers": 0, "ffn": 32, "club_hidden": 16,
        "cpc_hidden": 16, "specific_dim": 16, "text_hidden": 8, "proj_dims": [16, 16], "trans_hidden": 16}
# a task's options for a smoke evaluation, where it has them (head tasks and toc_recon)
FAST_TASK = {"epochs": 1, "patience": 1, "batch_size": 64, "n_random": 2, "codebook_size": 16, "dim": 8,
             "hidden": 8}


def paired_corpus(n: int = 160, t: int = 4, classes: int = 5, seed: int = 0, labels: bool = False):
    """Audio / video / text of n clips sharing one semantic vector per (clip, second) — a class prototype plus
    instance noise — seen through a different random tanh sensor per modality, plus a private nuisance per
    modality. Returns (corpus, clip classes)."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, classes, n)
    semantic = rng.standard_normal((classes, 6))[clip][:, None] + 0.5 * rng.standard_normal((n, t, 6))
    arrays = {}
    for m, width in (("audio", 12), ("video", 16), ("text", 14)):
        latent = np.concatenate([semantic, rng.standard_normal((n, t, 4))], -1)
        arrays[m] = np.tanh(latent @ rng.standard_normal((10, width)) / np.sqrt(10)).astype(np.float32)
    corpus = ArrayCorpus(arrays, fingerprint=f"paired-{seed}")
    if labels:
        corpus.labels = lambda name: clip if name == "clip" else None
    return corpus, clip


SMOKE = {"mi_steps": 1}     # the contract checks' pretraining: one CLUB step per batch


def smoke_cfg(entry: registry.Entry, over: dict | None = None, epochs: int = 1) -> dict:
    """The card's defaults with TINY and `over` applied where the card has the option, TINY's rest on top."""
    card = {k: v for k, v in {**TINY, "epochs": epochs, **(over or {})}.items() if k in entry.options}
    return {**entry.resolve(card), **{k: v for k, v in TINY.items() if k not in entry.options}}


def smoke_pretrain(entry: registry.Entry, corpus, seed: int = 0, over: dict | None = None, epochs: int = 1, ctx=None):
    return entry.load().pretrain(corpus, smoke_cfg(entry, over, epochs), seed, ctx or RunContext())


def pretrainable(entry: registry.Entry) -> bool:
    """Methods restricted to self-contained tasks (`only_tasks`, e.g. vqvae) have no corpus pretraining."""
    only = entry.only_tasks
    return not only or any(registry.get("task", t).needs_pretrained for t in only)


# --------------------------------------------------------------------------- methods
def encodable(pretrained, corpus) -> list[str]:
    """The corpus modalities the model says it encodes (all of them when it does not say)."""
    try:
        supported = set(pretrained.modalities)
    except NotImplementedError:
        supported = set(corpus.modalities)
    return [m for m in corpus.modalities if m in supported]


def check_pretrained(entry: registry.Entry, pretrained, corpus, directory: Path) -> None:
    """A smoke pretraining encodes every corpus modality to finite `[N, T, dim]`, says what its card says about
    `discrete`, survives save/load bit for bit, and (when discrete) a refiner can read its codebooks."""
    assert pretrained.discrete == entry.discrete, "the Pretrained and the card disagree on `discrete`"
    clips = {m: corpus.arrays[m][:4] for m in encodable(pretrained, corpus)}
    assert clips, "encodes none of the corpus modalities"
    encoded = {}
    for m, x in clips.items():
        out = pretrained.encode(m, x)
        assert tuple(out.shape) == (4, x.shape[1], pretrained.dim), (m, tuple(out.shape))
        assert torch.isfinite(torch.as_tensor(out)).all(), m
        encoded[m] = out
    pretrained.save(directory)
    loaded = entry.load().load(directory, smoke_cfg(entry), RunContext())
    for m, x in clips.items():
        assert torch.equal(torch.as_tensor(loaded.encode(m, x)), torch.as_tensor(encoded[m])), f"{m}: save/load"
    if entry.discrete:
        toc = registry.get("refiner", "toc")
        refined = toc.load().refine(loaded, toc.resolve({"q": 2}), RunContext())
        m = next(iter(clips))
        assert refined.encode(m, clips[m]).shape[:2] == encoded[m].shape[:2]


def check_deterministic(entry: registry.Entry, first, corpus) -> None:
    again = smoke_pretrain(entry, corpus, over=SMOKE)
    for m in encodable(first, corpus):
        x = corpus.arrays[m][:4]
        assert torch.equal(torch.as_tensor(first.encode(m, x)), torch.as_tensor(again.encode(m, x))), m


def _other_value(opt: registry.Option):
    """A valid value different from the option's default, or None when there is no obvious one."""
    if opt.choices:
        return next((c for c in opt.choices if c != opt.default and c is not None), None)
    kind = opt.type or (type(opt.default).__name__ if opt.default is not None else None)
    if kind == "bool":
        return not opt.default
    if kind == "int":
        return 3 if opt.default is None else opt.default + 1
    if kind == "float":
        return 0.125 if opt.default is None else opt.default + 0.5
    return None


def check_method_keys(entry: registry.Entry) -> None:
    """Every option changes the cell key; every option but the inference-only ones changes the pretraining key
    (a setting the pretraining ignores in its key would serve a stale model), inference-only ones never do."""
    task = spec.parse_task("tinytask")
    base = spec.MethodSpec(spec.Component(entry, entry.resolve({})))
    for name, opt in entry.options.items():
        value = _other_value(opt)
        if value is None:
            continue
        other = spec.MethodSpec(spec.Component(entry, entry.resolve({name: value})))
        assert spec.cell_key(other, task, "fp", 0) != spec.cell_key(base, task, "fp", 0), name
        changed = spec.pretrain_key(other, "fp", 0) != spec.pretrain_key(base, "fp", 0)
        assert changed != opt.inference_only, f"option '{name}' {'is' if changed else 'is not'} in the pretrain key"


# --------------------------------------------------------------------------- refiners
def check_refiner(entry: registry.Entry, pretrained, corpus) -> None:
    """Training-free: the input model encodes as before, the refined one gives finite `[N, T, d]`, twice the same."""
    x = corpus.arrays["audio"][:4]
    before = torch.as_tensor(pretrained.encode("audio", x)).clone()
    refiner = entry.load()
    cfg = entry.resolve({})
    refined = refiner.refine(pretrained, cfg, RunContext())
    out = torch.as_tensor(refined.encode("audio", x))
    assert out.shape[:2] == before.shape[:2] and torch.isfinite(out).all()
    assert torch.equal(torch.as_tensor(pretrained.encode("audio", x)), before), "refine changed its input"
    assert torch.equal(torch.as_tensor(refiner.refine(pretrained, cfg, RunContext()).encode("audio", x)), out)


# --------------------------------------------------------------------------- tasks
class RecordingWorld:
    """A world that remembers which files a task opens (they must be the card's `datasets`: the fingerprint)."""

    def __init__(self, world):
        self.world, self.opened = world, set()

    def open(self, name):
        self.opened.add(name)
        return self.world.open(name)


def check_task(entry: registry.Entry, world, encoder, scratch: Path) -> dict:
    """A smoke evaluation returns `{row: {metric: finite number}}` with the main metric in every row, opens only
    the files its card lists, and gives the same numbers twice."""
    cfg = entry.resolve({k: v for k, v in FAST_TASK.items() if k in entry.options})
    task = entry.load()
    task.validate(cfg)
    assert task.main_metric in task.higher_is_better, "main_metric needs a direction in higher_is_better"
    results = []
    for i in range(2):
        recording = RecordingWorld(world)
        ctx = RunContext(scratch=scratch / f"run{i}")
        ctx.scratch.mkdir(parents=True)
        results.append(task.evaluate(encoder if entry.needs_pretrained else None, recording, cfg, 0, ctx))
        assert recording.opened <= set(entry.datasets), f"opened {sorted(recording.opened)}, card says {entry.datasets}"
    out = results[0]
    assert out and all(isinstance(row, str) for row in out)
    for row, values in out.items():
        assert task.main_metric in values, row
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()), (row, values)
    assert results[0] == results[1], "same seed, different numbers"
    return out
