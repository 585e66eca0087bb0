"""SimMMDG (Dong et al., NeurIPS 2023): the continuous baseline (no codebook; TOC refuses it).

Each modality's embedding e^m `[B, T, D]` (modal-general encoder Φ^m) is split in half, [shared | specific]:
- supervised contrastive loss (SupCon, Khosla et al. 2020, τ = 0.1, weight 3.0) on the projected, clip-pooled
  shared halves of every modality: views with the same label attract, all others repel,
      L_sup = mean_i −1/|P(i)| Σ_{p∈P(i)} log( exp(u_i·u_p/τ) / Σ_{a≠i} exp(u_i·u_a/τ) ),  u = normalise(proj(mean_T s))
- distance loss (weight 0.7) pushing each second's shared and specific halves apart;
- cross-modal translation (weight 0.1): an MLP per ordered modality pair maps e^m to e^n, normalised L2 loss
  ‖ê^n/‖ê^n‖ − e^n/‖e^n‖‖²;
- reconstruction of the input from the whole embedding (weight 1), standing in for SimMMDG's cross-entropy on the
  concatenated features, which keeps the specific half informative (pretraining here has no downstream classifier).
`encode` returns, per second, what SupCon aligns across modalities: the L2-normalised output of the modality's
projection head applied to the shared half, `[N, T, P]` (continuous, `discrete = False`; `readout` option).

Why the projector output (docs/FIDELITY.md): SupCon only ties the modalities together *after* their separate
projection heads; nothing puts the modalities' shared halves into one coordinate system, so a head trained on one
modality's shared half reads the other modality's as noise (audio–video in-batch R@1 of the shared halves sits at
chance). SimMMDG's release has one `ProjectHead` per modality, so that is kept; the per-second read (rather than the
clip mean tiled over time) keeps the seconds a localisation task needs. `readout=shared` is the pre-projection half.

Design decisions (SimMMDG's own code is supervised domain generalisation; docs/ORIGINAL_CODE.md §5):
- Labels (`labels` option): `auto` uses the pretraining corpus' clip classes (`labels/clip`, as SimMMDG's SupCon is
  supervised) when the corpus exposes them, else instance-level positives (the same clip in the other modalities);
  `clip` requires them, `instance` never uses them (label-free, comparable with the self-supervised methods).
  The corpus exposes them as `corpus.labels("clip")` or through its feature file (`tasks.data.H5Corpus.file`).
- The released distance loss is −MSE(shared, specific), which is unbounded once nothing fixes the embedding's scale
  (no classifier here); it is taken on L2-normalised halves, −‖ŝ − p̂‖² ∈ [−4, 0], i.e. their cosine is pushed down.
- One projection head per modality (Linear–BN–ReLU ×2, Linear; 2048-2048-128 at scale=paper), one translator per
  ordered pair (hidden 2048 at scale=paper).
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.contracts import RunContext, UserError

from .base import CodebookMethod, CodebookPretrained, canonical_modalities
from .encoders import ModalityBranch
from .trainer import training_summary
from .mutual_info import mlp
from .precision import autocast
from .trainer import Step

LABEL_KEY = "clip_label"        # the batch column the labelled corpus adds (read by the model like a modality)
LABEL_MODES = ("auto", "clip", "instance")
READOUTS = ("projector", "shared")


# --------------------------------------------------------------------------- losses (pure)
def supcon_loss(features: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L^sup_out): features `[N, P]` (L2-normalised), labels `[N]`.

    Anchors without any positive are left out of the mean (they only have negatives)."""
    n = features.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = (features @ features.t() / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    has = count > 0
    if not has.any():
        raise ValueError("SupCon needs at least one positive pair in the batch")
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1)[has] / count[has]
    return per_anchor.mean()


def shared_specific_distance(shared: Tensor, specific: Tensor) -> Tensor:
    """−mean ‖ŝ − p̂‖² over vectors with ŝ, p̂ the L2-normalised halves `[..., D/2]` (in [−4, 0]; lower = further)."""
    return -(F.normalize(shared, dim=-1) - F.normalize(specific, dim=-1)).pow(2).sum(-1).mean()


def translation_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Normalised L2: mean ‖ê/‖ê‖ − e/‖e‖‖² over vectors `[..., D]`."""
    return (F.normalize(predicted, dim=-1) - F.normalize(target, dim=-1)).pow(2).sum(-1).mean()


def view_labels(labels: Tensor | None, batch: int, n_views: int) -> Tensor:
    """SupCon labels of the `n_views · batch` views (view-major). Instance positives when `labels` is None; a clip
    with label < 0 (no event) is positive only with its own other views."""
    ids = torch.arange(batch)
    if labels is not None:
        labels = labels.long().cpu()
        ids = torch.where(labels >= 0, labels, -1 - ids)
    return ids.repeat(n_views)


def projection_head(dims: list[int]) -> nn.Sequential:
    """Linear–BatchNorm–ReLU blocks then a final Linear (SimMMDG's ProjectHead)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- labels from the corpus
def corpus_clip_labels(corpus) -> np.ndarray | None:
    """The corpus' per-clip class `[N]` if it exposes one (`corpus.labels("clip")` or its feature file), else None."""
    getter = getattr(corpus, "labels", None)
    if callable(getter):
        try:
            return np.asarray(getter("clip"), dtype=np.int64)
        except (KeyError, UserError):
            return None
    ff = getattr(corpus, "file", None)
    if ff is not None and "clip" in getattr(ff, "label_names", ()):
        return np.asarray(ff.labels("clip"), dtype=np.int64)
    return None


class LabelledCorpus:
    """A corpus whose batches also carry each clip's class under `LABEL_KEY` (`[B]`)."""

    def __init__(self, corpus, labels: np.ndarray):
        if len(labels) != len(corpus):
            raise UserError(f"corpus labels/clip has {len(labels)} entries for {len(corpus)} clips")
        self.corpus, self.labels_clip = corpus, labels
        self.modalities, self.fingerprint = corpus.modalities, corpus.fingerprint
        self.file = getattr(corpus, "file", None)     # the true factors the factor probes read (synthetic worlds)

    def __len__(self) -> int:
        return len(self.corpus)

    def feature_shape(self, modality: str) -> tuple[int, ...]:
        return self.corpus.feature_shape(modality)

    def iter_batches(self, batch_size: int, seed: int, shuffle: bool = True,
                     modalities: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        names = tuple(m for m in (modalities or self.modalities) if m != LABEL_KEY)
        for batch in self.corpus.iter_batches(batch_size, seed, shuffle, names):
            yield {**batch, LABEL_KEY: self.labels_clip[batch["index"]]}


# --------------------------------------------------------------------------- model
class SimMMDGModel(nn.Module):
    """Φ per modality (embedding [shared | specific]), projection heads, translators, decoders."""

    def __init__(self, shapes: Mapping[str, tuple], s: Mapping[str, Any]):
        super().__init__()
        self.features = canonical_modalities(shapes)
        self.use_labels = s["labels"] == "clip"
        self.modalities = self.features + ((LABEL_KEY,) if self.use_labels else ())
        d = int(s["code_dim"])
        self.half = d // 2
        self.w = {k: float(s[f"w_{k}"]) for k in ("supcon", "dist", "trans", "recon")}
        self.tau = float(s["supcon_tau"])
        self.branches = nn.ModuleDict({m: ModalityBranch(m, shapes[m], s, specific=False,
                                                         decoder=self.w["recon"] > 0, decoder_side=False)
                                       for m in self.features})
        self.projectors = nn.ModuleDict({m: projection_head([self.half, *s["proj_dims"]]) for m in self.features})
        self.proj_out = int(s["proj_dims"][-1])
        hidden = int(s["trans_hidden"])
        self.translators = nn.ModuleDict({f"{m}_to_{n}": mlp([d, hidden, d])
                                          for m, n in itertools.permutations(self.features, 2)})

    def embed(self, modality: str, x: Tensor) -> Tensor:
        """Raw features `[N, T, ...]` -> embedding e `[N, T, D]` = [shared | specific]."""
        branch = self.branches[modality]
        branch.check(x)
        return branch.general(branch.inputs(x))

    def shared(self, modality: str, x: Tensor) -> Tensor:
        return self.embed(modality, x)[..., :self.half]

    def losses(self, batch: Mapping[str, Tensor], step: Step | None = None) -> dict[str, Tensor]:
        feats = {m: self.branches[m].inputs(batch[m]) for m in self.features}
        e = {m: self.branches[m].general(feats[m]) for m in self.features}
        shared = {m: v[..., :self.half] for m, v in e.items()}
        specific = {m: v[..., self.half:] for m, v in e.items()}
        losses: dict[str, Tensor] = {}
        if self.w["supcon"]:
            views = torch.cat([F.normalize(self.projectors[m](shared[m].mean(1)), dim=-1) for m in self.features])
            b = next(iter(e.values())).shape[0]
            labels = view_labels(batch.get(LABEL_KEY) if self.use_labels else None, b, len(self.features))
            losses["supcon"] = self.w["supcon"] * supcon_loss(views, labels.to(views.device), self.tau)
        if self.w["dist"]:
            dist = sum(shared_specific_distance(shared[m], specific[m]) for m in self.features) / len(self.features)
            losses["dist"] = self.w["dist"] * dist
        if self.w["trans"] and len(self.features) > 1:
            pairs = list(itertools.permutations(self.features, 2))
            trans = sum(translation_loss(self.translators[f"{m}_to_{n}"](e[m]), e[n]) for m, n in pairs)
            losses["trans"] = self.w["trans"] * trans / len(pairs)
        if self.w["recon"]:
            for m in self.features:
                losses[f"recon_{m}"] = self.w["recon"] * F.mse_loss(self.branches[m].decode(e[m], None), feats[m])
        return losses


# --------------------------------------------------------------------------- the continuous representation
class ContinuousPretrained(CodebookPretrained):
    """SimMMDG's frozen encoders: `encode` gives the shared half `[N, T, D/2]`; no codebook, no codes."""

    discrete = False

    @property
    def codebooks(self) -> list:
        raise NotImplementedError(f"{self.method} is continuous: it has no codebook")

    def codes(self, modality: str, x):
        raise NotImplementedError(f"{self.method} is continuous: it has no codes")

    def embed(self, modality: str, x) -> torch.Tensor:
        """Whole embeddings [shared | specific] `[N, T, D]` (float32, CPU)."""
        self.model.eval()
        with torch.no_grad(), autocast(self.precision, self.device):
            out = [self.model.embed(modality, chunk).float().cpu() for chunk in self._chunks(modality, x)]
        if not out:
            raise UserError(f"{self.method}: nothing to encode (0 clips of {modality})")
        return torch.cat(out)

    readout = "projector"

    @property
    def dim(self) -> int:
        return int(self.model.proj_out) if self.readout == "projector" else int(self.model.half)

    def view(self, readout: str) -> "ContinuousPretrained":
        """The same frozen model read out as `readout` (an inference-only choice)."""
        return self.variant(readout=readout)

    def readout_of(self, modality: str, e: torch.Tensor) -> torch.Tensor:
        """Embedding `[N, T, D]` -> the benchmarked representation `[N, T, P or D/2]`."""
        shared = e[..., :self.model.half]
        if self.readout == "shared":
            return shared
        with torch.no_grad():
            self.model.eval()
            proj = self.model.projectors[modality].to(shared.device)
            flat = proj(shared.reshape(-1, shared.shape[-1]).to(next(proj.parameters()).dtype))
        return F.normalize(flat.float(), dim=-1).reshape(*shared.shape[:-1], -1)

    def encode(self, modality: str, x) -> torch.Tensor:
        return self.readout_of(modality, self.embed(modality, x))

    def compute_diagnostics(self, corpus, batch_size: int, ctx: RunContext | None = None) -> dict:
        """One pass: per modality the mean distance ‖ŝ − p̂‖² (0..4) between each second's normalised shared and
        specific halves; per modality pair the in-batch top-1 retrieval accuracy (%) of the clip-pooled readout
        (`readout`) and of the clip-pooled shared halves (`shared`): the first must be far above chance for a
        cross-modal head to transfer."""
        ctx = ctx or RunContext()
        names = list(self.modalities)
        dist = {m: 0.0 for m in names}
        pairs = list(itertools.combinations(names, 2))
        hits = {view: {f"{a}-{b}": 0.0 for a, b in pairs} for view in ("readout", "shared")}
        batches_seen, clips = 0, 0
        n_batches = -(-len(corpus) // batch_size)
        batches = corpus.iter_batches(batch_size, seed=0, shuffle=False, modalities=names)
        for batch in ctx.progress(batches, description=f"{self.method} diagnostics", total=n_batches):
            e = {m: self.embed(m, batch[m]) for m in names}
            h = self.model.half
            for m in names:
                dist[m] += -shared_specific_distance(e[m][..., :h], e[m][..., h:]).item()
            views = {"shared": {m: e[m][..., :h] for m in names},
                     "readout": {m: self.readout_of(m, e[m]) for m in names}}
            for view, reps in views.items():
                pooled = {m: F.normalize(r.mean(1), dim=-1) for m, r in reps.items()}
                for a, b in pairs:
                    sim = pooled[a] @ pooled[b].t()
                    hits[view][f"{a}-{b}"] += (sim.argmax(1) == torch.arange(sim.shape[0])).float().sum().item()
            batches_seen += 1
            clips += e[names[0]].shape[0]
        out = {"shared_specific_distance": {m: v / max(batches_seen, 1) for m, v in dist.items()},
               "in_batch_retrieval_r1": {k: 100.0 * v / max(clips, 1) for k, v in hits["readout"].items()},
               "in_batch_retrieval_r1_shared": {k: 100.0 * v / max(clips, 1) for k, v in hits["shared"].items()},
               "in_batch_chance": 100.0 * batches_seen / max(clips, 1),
               "readout": self.readout, "labels": self.settings.get("labels"), "clips": clips}
        if self.history:
            out["training"] = training_summary(self.history)
        self._diagnostics = out
        return out


class SimMMDG(CodebookMethod):
    pretrained_class = ContinuousPretrained

    def validate(self, cfg: Mapping[str, Any]) -> None:
        super().validate(cfg)
        s = self.settings(cfg)
        if s["labels"] not in LABEL_MODES:
            raise UserError(f"method '{self.name}': labels must be one of {list(LABEL_MODES)}, got {s['labels']!r}")
        if s["readout"] not in READOUTS:
            raise UserError(f"method '{self.name}': readout must be one of {list(READOUTS)}, got {s['readout']!r}")
        if s["code_dim"] % 2:
            raise UserError(f"method '{self.name}': code_dim must be even (it is split into shared | specific), "
                            f"got {s['code_dim']}")
        if not any(s[f"w_{k}"] > 0 for k in ("supcon", "dist", "trans", "recon")):
            raise UserError(f"method '{self.name}': every loss weight is 0, nothing would be trained")

    def build_model(self, shapes, settings) -> SimMMDGModel:
        return SimMMDGModel(shapes, settings)

    def inference_view(self, pretrained: ContinuousPretrained, cfg: Mapping[str, Any]) -> ContinuousPretrained:
        """Apply the inference-only `readout` to a frozen SimMMDG, whichever readout it was trained with."""
        return pretrained.view(cfg.get("readout") or "projector")

    def load(self, directory, cfg, ctx) -> ContinuousPretrained:
        return self.inference_view(super().load(directory, cfg, ctx), cfg)

    def pretrain(self, corpus, cfg: Mapping[str, Any], seed: int, ctx: RunContext) -> ContinuousPretrained:
        """Resolve `labels` against the corpus, then the shared loop (labels ride along in each batch)."""
        self.validate(cfg)
        labels = corpus_clip_labels(corpus) if cfg.get("labels", "auto") in ("auto", "clip") else None
        if cfg.get("labels") == "clip" and labels is None:
            raise UserError(f"method '{self.name}': labels=clip, but the pretraining corpus has no labels/clip "
                            "(use labels=instance)")
        mode = "clip" if labels is not None else "instance"
        ctx.notes["simmmdg_labels"] = mode
        source = LabelledCorpus(corpus, labels) if labels is not None else corpus
        return self.inference_view(super().pretrain(source, {**cfg, "labels": mode}, seed, ctx), cfg)
