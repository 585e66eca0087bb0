"""CODIS, TURN, SimMMDG, FCCID, SRCID (issue 6): each method's distinctive loss moves what it claims to move on a
tiny paired corpus (against the same run with that term switched off), the losses on hand-checked cases, and that
`ls -v` lists the ablation switches. The representation contracts and the keys are checked for every registered
method in test_contracts.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from benchmark import registry, spec
from benchmark.contracts import RunContext, UserError
from methods.codis import sinkhorn_assignments, swapped_prediction_loss
from methods.mutual_info import CLUB
from methods.simmmdg import (LABEL_KEY, LabelledCorpus, shared_specific_distance, supcon_loss, translation_loss,
                             view_labels)
from methods.turn import ConcatCodebooks

from contract_checks import paired_corpus, smoke_pretrain

ROOT = Path(__file__).resolve().parent.parent.parent


def pretrain(name: str, over: dict | None = None, corpus=None, seed: int = 0, epochs: int = 2, ctx=None):
    """Pretrain `name` on the tiny corpus with tiny widths (extra settings bypass the card, as a preset would)."""
    return smoke_pretrain(registry.get("method", name), corpus or paired_corpus()[0], seed, over, epochs, ctx)


def class_r1(a: torch.Tensor, b: torch.Tensor, labels: np.ndarray) -> float:
    """Share of clips whose nearest clip in the other modality (cosine of T-pooled vectors) has the same class."""
    sim = F.normalize(a.mean(1), dim=-1) @ F.normalize(b.mean(1), dim=-1).t()
    labels = torch.as_tensor(labels)
    return float((labels[sim.argmax(1)] == labels).float().mean())


# --------------------------------------------------------------------------- CODIS
def test_sinkhorn_balances_prototypes_where_softmax_collapses():
    """Every item prefers prototype 0; softmax gives it nearly all mass, the OT assignment spreads it evenly."""
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.uniform(-0.2, 0.2, (60, 4)), dtype=torch.float32)
    scores[:, 0] += 0.5
    q = sinkhorn_assignments(scores, eps=0.05, iters=50)
    assert torch.allclose(q.sum(1), torch.ones(60), atol=1e-5)                 # rows are distributions
    assert torch.allclose(q.sum(0), torch.full((4,), 15.0), atol=0.2)          # 60 items / 4 prototypes
    assert (scores / 0.05).softmax(-1).sum(0)[0] > 50                          # the greedy assignment collapses


def test_swapped_prediction_is_the_cross_entropy_of_the_other_modality_assignment():
    logits = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 1.0]])}
    q = {"a": torch.tensor([[0.25, 0.75]]), "b": torch.tensor([[1.0, 0.0]])}
    log_a, log_b = logits["a"].log_softmax(-1)[0], logits["b"].log_softmax(-1)[0]
    expected = (-log_a[0] + -(0.25 * log_b[0] + 0.75 * log_b[1])) / 2            # a predicts q_b, b predicts q_a
    assert torch.isclose(swapped_prediction_loss(logits, q), expected)


def code_perplexity(codes: torch.Tensor, size: int) -> float:
    """exp(entropy) of the code histogram: how many codes are used, evenly weighted (1..size)."""
    counts = torch.bincount(codes.reshape(-1), minlength=size).double()
    p = counts[counts > 0] / counts.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def test_codis_sinkhorn_swapped_prediction_spreads_codes_over_the_prototypes():
    """The OT targets are balanced, so training on them spreads the learnt codes over the prototypes; with the
    swapped term off (instance InfoNCE only) the same encoders crowd onto few prototypes."""
    corpus, _ = paired_corpus()
    x = corpus.arrays
    on = pretrain("codis", {"lr": 3e-3}, corpus, epochs=4)
    off = pretrain("codis", {"lr": 3e-3, "w_swap": 0.0}, corpus, epochs=4)
    for m in ("audio", "video"):
        p_on, p_off = code_perplexity(on.codes(m, x[m]), 32), code_perplexity(off.codes(m, x[m]), 32)
        assert p_on > p_off + 4, (m, p_on, p_off)
    assert on.codebooks[0].shape == (32, 16)
    assert torch.allclose(on.codebooks[0].norm(dim=1), torch.ones(32), atol=1e-5)   # unit prototypes
    assert torch.allclose(on.encode("audio", x["audio"][:5]).norm(dim=-1), torch.ones(5, 4), atol=1e-5)


# --------------------------------------------------------------------------- TURN
def test_turn_info_nce_raises_cross_modal_retrieval_of_pooled_codes():
    corpus, clip = paired_corpus()
    x = corpus.arrays
    r = {}
    for w in (1.0, 0.0):
        p = pretrain("turn", {"w_nce": w, "lr": 3e-3}, corpus, epochs=6)
        r[w] = class_r1(p.encode("audio", x["audio"]), p.encode("video", x["video"]), clip)
    assert r[1.0] > r[0.0] + 0.15, r


def test_turn_codes_are_chunk_codes_side_by_side():
    corpus, _ = paired_corpus(n=40)
    p = pretrain("turn", {"chunks": 4}, corpus, epochs=1)
    x = corpus.arrays["text"][:3]
    codes, vectors = p.codes("text", x), p.encode("text", x)
    assert codes.shape == (3, 4, 4) and vectors.shape == (3, 4, 16) and p.dim == 16
    assert [tuple(cb.shape) for cb in p.codebooks] == [(8, 4)] * 4        # codebook_size 32 is the total
    rebuilt = torch.cat([p.codebooks[k][codes[..., k]] for k in range(4)], -1)
    assert torch.allclose(rebuilt, vectors)
    per_chunk = pretrain("turn", {"chunks": 4, "codebook_per": "chunk"}, corpus, epochs=1)
    assert [tuple(cb.shape) for cb in per_chunk.codebooks] == [(32, 4)] * 4
    with pytest.raises(UserError, match="divisible"):
        pretrain("turn", {"chunks": 3, "code_dim": 12, "heads": 1}, corpus, epochs=1)


def test_concat_codebooks_quantize_each_slice_with_its_own_codebook():
    class Fixed:
        def __init__(self, table):
            self.codebooks = [torch.tensor(table)]

        def quantize(self, z):
            idx = torch.cdist(z, self.codebooks[0]).argmin(-1)
            return self.codebooks[0][idx], idx

    view = ConcatCodebooks([Fixed([[0.0], [10.0]]), Fixed([[0.0, 0.0], [1.0, 1.0]])])
    q, idx = view.quantize(torch.tensor([[9.0, 0.9, 0.8], [1.0, 0.1, 0.0]]))
    assert q.tolist() == [[10.0, 1.0, 1.0], [0.0, 0.0, 0.0]] and idx.tolist() == [[1, 1], [0, 0]]
    q1, idx1 = view.quantize(torch.tensor([[9.0]]))              # as wide as the first part: that part alone
    assert q1.tolist() == [[10.0]] and idx1.tolist() == [[1]]
    for bad in (torch.zeros(1, 2), torch.zeros(1, 4)):
        with pytest.raises(ValueError, match="width"):
            view.quantize(bad)


# --------------------------------------------------------------------------- SimMMDG
def test_supcon_matches_hand_computed_value():
    f = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    labels = torch.tensor([0, 0, 1])
    # anchors 0 and 1 each have one positive (cosine 1) and one negative (cosine 0); anchor 2 has no positive
    e1, e0 = np.exp(1 / 0.5), np.exp(0.0)
    expected = -np.log(e1 / (e1 + e0))
    assert np.isclose(supcon_loss(f, labels, temperature=0.5).item(), expected, atol=1e-6)


def test_simmmdg_pieces_on_known_cases():
    s, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[-2.0, 0.0]])
    assert np.isclose(shared_specific_distance(s, p).item(), -4.0)            # antipodal halves: furthest apart
    assert np.isclose(translation_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 5.0]])).item(), 2.0)
    assert view_labels(None, 3, 2).tolist() == [0, 1, 2, 0, 1, 2]            # instance positives across views
    assert view_labels(torch.tensor([4.0, -1.0, 4.0]), 3, 2).tolist() == [4, -2, 4, 4, -2, 4]


def test_simmmdg_distance_loss_separates_shared_from_specific():
    corpus, _ = paired_corpus()
    on = pretrain("simmmdg", {"w_dist": 0.7, "labels": "instance", "lr": 3e-3}, corpus, epochs=4)
    off = pretrain("simmmdg", {"w_dist": 0.0, "labels": "instance", "lr": 3e-3}, corpus, epochs=4)
    d_on, d_off = (np.mean(list(p.diagnostics()["shared_specific_distance"].values())) for p in (on, off))
    assert d_on > d_off + 0.4, (d_on, d_off)
    assert not on.discrete and on.dim == 16 and on.view("shared").dim == 8     # projector output | shared half
    assert on.encode("audio", corpus.arrays["audio"][:2]).shape == (2, 4, 16)
    with pytest.raises(NotImplementedError):
        on.codebooks


def test_simmmdg_encodes_what_supcon_aligns_across_modalities():
    """The benchmarked readout is the normalised projector output, the space SupCon aligns: a clip's nearest clip
    in the other modality shares its class far above chance there, and not in the pre-projection shared halves
    (no loss puts those of different modalities into one coordinate system)."""
    corpus, clip = paired_corpus(n=160, labels=True)
    p = pretrain("simmmdg", {"lr": 3e-3}, corpus, epochs=8)
    a, v = corpus.arrays["audio"], corpus.arrays["video"]
    projector = class_r1(p.encode("audio", a), p.encode("video", v), clip)
    shared = p.view("shared")
    raw_shared = class_r1(shared.encode("audio", a), shared.encode("video", v), clip)
    chance = 1 / 5
    assert projector > 3 * chance and projector > raw_shared + 0.2, (projector, raw_shared)
    r1 = p.diagnostics()["in_batch_retrieval_r1"]["audio-video"]
    assert r1 > 3 * p.diagnostics()["in_batch_chance"], p.diagnostics()
    assert np.allclose(p.encode("audio", a[:3]).norm(dim=-1), 1.0, atol=1e-5)


def test_simmmdg_uses_corpus_clip_labels_when_present():
    corpus, clip = paired_corpus(n=40, labels=True)
    ctx = RunContext()
    p = pretrain("simmmdg", {}, corpus, epochs=1, ctx=ctx)
    assert ctx.notes["simmmdg_labels"] == "clip" and p.settings["labels"] == "clip"
    batch = next(LabelledCorpus(corpus, clip).iter_batches(8, seed=0))
    assert np.array_equal(batch[LABEL_KEY], clip[batch["index"]])
    plain, _ = paired_corpus(n=40)
    with pytest.raises(UserError, match="labels/clip"):
        pretrain("simmmdg", {"labels": "clip"}, plain, epochs=1)
    assert spec.parse_method("simmmdg").discrete is False
    with pytest.raises(UserError, match="discrete"):
        spec.parse_method("simmmdg+toc")


# --------------------------------------------------------------------------- FCCID
def test_fccid_info_nce_raises_av_text_agreement():
    corpus, clip = paired_corpus()
    x = corpus.arrays
    scores = {}
    for nce in (True, False):
        p = pretrain("fccid", {"nce": nce, "mi_steps": 1, "lr": 3e-3}, corpus, epochs=6)
        text = p.encode("text", x["text"])
        scores[nce] = (class_r1(p.encode("audio", x["audio"]), text, clip)
                       + class_r1(p.encode("video", x["video"]), text, clip)) / 2
    assert scores[True] > scores[False] + 0.15, scores


def test_fccid_clubs_follow_the_ablation_switches():
    corpus, _ = paired_corpus(n=40)
    p = pretrain("fccid", {"club_a": False, "club_te": False, "mi_steps": 1}, corpus, epochs=1)
    assert sorted(p.model.estimators()) == ["av", "video"]
    assert {"club_av", "club_video"} <= set(p.history[-1]) and "club_audio" not in p.history[-1]
    assert p.codes("video", corpus.arrays["video"][:2]).shape == (2, 4)       # one code per second (coarse path)


# --------------------------------------------------------------------------- SRCID
def fitted_mi(x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> float:
    """An independent CLUB, fitted by likelihood on (x, y), then its MI estimate averaged over 20 permutations."""
    torch.manual_seed(0)
    club = CLUB(x.shape[-1], y.shape[-1], 32)
    opt = torch.optim.Adam(club.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        club.learning_loss(x, y).backward()
        opt.step()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return float(np.mean([club.mi_upper_bound(x, y, g).item() for _ in range(20)]))


def layer2_mi(p, x) -> float:
    """Σ over modalities of an independent CLUB's estimate of I(layer-2 code; layer-2 specific vector)."""
    total = 0.0
    for m in ("audio", "video", "text"):
        with torch.no_grad():
            b1, b2 = p.model.layer1.branches[m], p.model.layer2.branches[m]
            residual = b1.specific(b1.inputs(torch.as_tensor(x[m])))[1]          # layer 2's input
            code = p.model.layer2.quantizer.quantize(b2.general(residual))[0]
            specific = b2.specific(residual)[1]
        total += fitted_mi(code, specific)
    return total


def test_srcid_layer2_club_lowers_layer2_mutual_information():
    corpus, _ = paired_corpus()
    over = {"warm_epoch": 0, "mi_steps": 5, "mi_lr": 1e-2, "layer2_weight": 1.0, "dead_after": 3}
    on = pretrain("srcid", {**over, "club_l2": True}, corpus, epochs=6)
    off = pretrain("srcid", {**over, "club_l2": False}, corpus, epochs=6)
    assert "l2_club_audio" in on.history[-1] and "l2_club_audio" not in off.history[-1]
    mi_on, mi_off = layer2_mi(on, corpus.arrays), layer2_mi(off, corpus.arrays)
    assert mi_on < 0.75 * mi_off and mi_on < mi_off - 0.03, (mi_on, mi_off)


def test_srcid_warm_start_runs_layer1_alone_before_warm_epoch():
    corpus, _ = paired_corpus(n=64)
    p = pretrain("srcid", {"warm_epoch": 1, "mi_steps": 1}, corpus, epochs=2)
    first, second = p.history
    assert not any(k.startswith("l2_") for k in first) and "l2_club_text" in second
    assert bool(p.model.layer2_on)
    never = pretrain("srcid", {"warm_epoch": 5, "mi_steps": 1}, corpus, epochs=1)
    early = pretrain("srcid", {"warm_epoch": 5, "warm_mi": 1e9, "mi_steps": 1}, corpus, epochs=1)   # MI rule
    assert not bool(never.model.layer2_on) and bool(early.model.layer2_on)


def test_srcid_warm_start_is_a_share_of_the_budget_unless_fixed():
    """Layer 2 joins at round(0.6 · epochs) (H-DCID: epoch 3 of 5), so it follows the budget instead of going
    stale; a run is then not a prefix of a longer one: the resume tag and the budget study say so."""
    from methods.srcid import warm_start_epoch
    srcid = registry.get("method", "srcid").load()
    s16, s32 = (srcid.settings({**registry.get("method", "srcid").defaults(), "epochs": e}) for e in (16, 32))
    assert (warm_start_epoch(s16), warm_start_epoch(s32)) == (10, 19)
    assert warm_start_epoch(srcid.settings({**registry.get("method", "srcid").defaults(), "scale": "paper"})) == 3
    assert warm_start_epoch({**s16, "warm_epoch": 2}) == 2
    assert srcid.schedule_depends_on_epochs(s16) and not srcid.schedule_depends_on_epochs({**s16, "warm_epoch": 2})
    corpus, _ = paired_corpus(n=8)
    shapes = {m: corpus.feature_shape(m) for m in corpus.modalities}
    assert srcid.resume_tag(s16, shapes, corpus, 0) != srcid.resume_tag(s32, shapes, corpus, 0)
    fixed = [{**s, "warm_epoch": 2} for s in (s16, s32)]
    assert srcid.resume_tag(fixed[0], shapes, corpus, 0) == srcid.resume_tag(fixed[1], shapes, corpus, 0)
    p = pretrain("srcid", {"warm_epoch": None, "warm_frac": 0.5, "mi_steps": 1}, paired_corpus(n=64)[0], epochs=2)
    first, second = p.history
    assert not any(k.startswith("l2_") for k in first) and "l2_club_text" in second


def test_srcid_only1_changes_inference_not_pretraining(tmp_path):
    corpus, _ = paired_corpus(n=40)
    both = pretrain("srcid", {"mi_steps": 1}, corpus, epochs=1)
    only = pretrain("srcid", {"mi_steps": 1, "only1": True}, corpus, epochs=1)
    x = corpus.arrays["audio"][:3]
    full = both.encode("audio", x)
    assert full.shape == (3, 4, 32) and both.dim == 32 and len(both.codebooks) == 2
    assert both.codes("audio", x).shape == (3, 4, 2)
    assert only.encode("audio", x).shape == (3, 4, 16) and only.dim == 16 and len(only.codebooks) == 1
    assert only.codes("audio", x).shape == (3, 4)
    assert torch.equal(only.encode("audio", x), full[..., :16])              # the same pretraining
    method, entry = registry.get("method", "srcid").load(), registry.get("method", "srcid")
    s = method.settings(entry.resolve({}))
    assert method.resume_tag(s, {}, corpus, 0) == method.resume_tag({**s, "only1": True}, {}, corpus, 0)
    both.save(tmp_path / "m")                                                 # a model saved with only1=false ...
    loaded = method.load(tmp_path / "m", entry.resolve({"only1": True}), RunContext())   # ... served as only1
    assert torch.equal(loaded.encode("audio", x), full[..., :16])


def test_ablation_switches_and_resolved_presets_are_listed_by_ls():
    out = subprocess.run([sys.executable, "-m", "benchmark", "ls", "methods", "-v"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    for name, entry in registry.entries("method").items():
        assert entry.hidden or name in out.stdout, name
    for key in ("club_a=", "club_v=", "club_av=", "club_te=", "club_l1=", "club_l2=", "only1=", "labels="):
        assert key in out.stdout, key
    scales = yaml.safe_load((ROOT / "methods" / "_pretrained.yaml").read_text())["scales"]   # read from the card
    preset, paper = scales["default"], scales["paper"]
    assert f"epochs=None → {preset['epochs']} (paper: {paper['epochs']}" in out.stdout
    assert f"batch_size=None → {preset['batch_size']} (paper: {paper['batch_size']})" in out.stdout


def test_a_family_card_overrides_single_preset_values():
    """simmmdg.yaml's `scales:` sets proj_dims per preset and keeps every base value (the card is where the
    defaults live; the class restates none)."""
    base = yaml.safe_load((ROOT / "methods" / "_pretrained.yaml").read_text())["scales"]
    card = yaml.safe_load((ROOT / "methods" / "simmmdg.yaml").read_text())["scales"]
    method = registry.get("method", "simmmdg").load()
    for scale in ("default", "paper"):
        s = method.settings({"scale": scale})
        assert s["proj_dims"] == card[scale]["proj_dims"]
        assert s["epochs"] == card[scale].get("epochs", base[scale]["epochs"])   # its own budget, else the base's
        assert s["lr"] == base[scale]["lr"]
    assert "proj_dims" not in registry.get("method", "dcid").scales["default"]
