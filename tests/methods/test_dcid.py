"""DCID end to end on a tiny in-memory corpus (issue 4): determinism, resume after a kill, save/load, diagnostics,
encoder layouts, option handling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.contracts import RunContext, UserError
from benchmark.results import CellResult
from methods.base import ArrayCorpus, CodebookPretrained, _clip_modes, resolve_settings, summarize_codes
from methods.dcid import DCIDModel
from methods.encoders import ModalityBranch
from methods.trainer import EstimatorFitter, Step, adam, find_checkpoint, main_parameters, to_tensors, train_step

TINY = {"epochs": 2, "batch_size": 20, "code_dim": 8, "codebook_size": 16}



def tiny_corpus(n: int = 40, t: int = 5, seed: int = 0) -> ArrayCorpus:
    """Audio vectors, 3×3 video maps (the spatial path), text tokens; one latent shared by the three."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, t, 4))
    def sensor(width):
        return shared @ rng.standard_normal((4, width)) + 0.3 * rng.standard_normal((n, t, width))
    video = np.maximum(sensor(3 * 3 * 6), 0).reshape(n, t, 3, 3, 6)
    return ArrayCorpus({"audio": sensor(10), "video": video, "text": sensor(12)}, fingerprint=f"tiny-{seed}")


def run(cfg_over=None, seed=0, ctx=None, corpus=None):
    entry = registry.get("method", "dcid")
    cfg = entry.resolve({**TINY, **(cfg_over or {})})
    return entry.load().pretrain(corpus or tiny_corpus(), cfg, seed, ctx or RunContext()), cfg


@pytest.fixture(scope="module")
def two_epochs():
    return run()[0]


def losses_only(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_same_seed_same_codebook_and_diagnostics(two_epochs):
    again, _ = run()
    assert torch.equal(two_epochs.codebooks[0], again.codebooks[0])
    assert two_epochs.diagnostics() == again.diagnostics()
    assert losses_only(two_epochs.history) == losses_only(again.history)
    other, _ = run(seed=1)
    assert not torch.equal(two_epochs.codebooks[0], other.codebooks[0])


def test_resume_after_one_epoch_equals_an_uninterrupted_run(two_epochs, tmp_path):
    ctx1 = RunContext(pretrain_dir=tmp_path / "ckpt")
    run({"epochs": 1}, ctx=ctx1)                                   # "killed" after epoch 1
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-0001.pt"]
    ctx2 = RunContext(pretrain_dir=tmp_path / "ckpt")
    resumed, _ = run({"epochs": 2}, ctx=ctx2)
    assert ctx2.notes["resumed_from_epoch"] == 1
    assert torch.equal(resumed.codebooks[0], two_epochs.codebooks[0])
    for a, b in zip(resumed.model.state_dict().values(), two_epochs.model.state_dict().values()):
        assert torch.equal(a, b)
    assert losses_only(resumed.history) == losses_only(two_epochs.history)
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-0002.pt"]
    assert find_checkpoint(tmp_path / "ckpt", "another config", 5) is None


def test_save_load_round_trip(two_epochs, tmp_path):
    two_epochs.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["meta.json", "model.pt"]
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    assert meta["entry"] == "methods.dcid:DCID" and meta["shapes"]["video"] == [5, 3, 3, 6]
    entry = registry.get("method", "dcid")
    loaded = entry.load().load(tmp_path / "model", entry.resolve(TINY), RunContext())
    x = tiny_corpus().arrays
    for m in ("audio", "video", "text"):
        assert torch.equal(loaded.encode(m, x[m]), two_epochs.encode(m, x[m]))
        assert torch.equal(loaded.codes(m, x[m]), two_epochs.codes(m, x[m]))
    assert loaded.diagnostics() == two_epochs.diagnostics()
    assert torch.equal(CodebookPretrained.load(tmp_path / "model").codebooks[0], two_epochs.codebooks[0])


def test_encode_returns_codebook_rows_and_checks_inputs(two_epochs):
    x = tiny_corpus().arrays
    q, idx = two_epochs.encode("audio", x["audio"]), two_epochs.codes("audio", x["audio"])
    assert q.dtype == torch.float32 and q.shape == (40, 5, 8) and idx.shape == (40, 5)
    assert torch.equal(q, two_epochs.codebooks[0][idx])
    with pytest.raises(UserError, match="per-step shape"):
        two_epochs.encode("video", x["video"].reshape(40, 5, -1))
    with pytest.raises(UserError, match="cannot encode"):
        two_epochs.encode("depth", x["audio"])
    assert two_epochs.dim == 8 and two_epochs.modalities == ("audio", "video", "text")


def test_diagnostics_are_recorded(two_epochs):
    d = two_epochs.diagnostics()
    assert d["codebook_size"] == 16 and d["clips"] == 40
    assert 0 < d["usage"] <= 1 and d["dead_fraction"] == pytest.approx(1 - d["usage"])
    assert 1 <= d["perplexity"] <= 16 and 0 <= d["agreement"] <= 1
    assert set(d["agreement_pairs"]) == {"audio-video", "audio-text", "video-text"}
    assert all(sum(c) == 40 * 5 for c in d["code_counts"].values())
    assert d["training"]["epochs"] == 2 and "cpc" in d["training"]["final_losses"]
    # the per-epoch losses reach the cell's result.json through these diagnostics (wall time left out)
    history = CellResult("dcid", "ave", 0, {}, diagnostics=d).loss_history
    assert [h["total"] for h in history] == [h["total"] for h in two_epochs.history] and len(history) == 2
    assert all("seconds" not in h for h in history)


def test_summarize_codes_by_hand():
    counts = {"audio": np.array([[3, 1, 0, 0]]), "video": np.array([[0, 2, 2, 0]])}
    modes = {"audio": np.array([0, 1]), "video": np.array([1, 1])}
    d = summarize_codes(counts, modes)
    assert d["usage"] == 0.75 and d["dead_fraction"] == 0.25
    assert d["shared_fraction"] == pytest.approx(1 / 3)          # code 1 of the 3 used codes
    p = np.array([3, 3, 2]) / 8
    assert d["perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))
    assert d["perplexity_per_modality"]["video"] == pytest.approx(2.0)
    assert d["agreement"] == 0.5 and d["agreement_pairs"] == {"audio-video": 0.5}
    assert _clip_modes(np.array([[2, 1, 2, 1], [3, 3, 0, 0]]), 4).tolist() == [1, 0]   # ties -> smaller code


def test_losses_switches_and_estimators():
    corpus = tiny_corpus()
    s = resolve_settings(registry.get("method", "dcid").resolve(TINY))
    shapes = {m: corpus.feature_shape(m) for m in corpus.modalities}
    torch.manual_seed(0)
    model = DCIDModel(shapes, s).train()
    batch = to_tensors(next(corpus.iter_batches(20, seed=0)), model.modalities, torch.float32, "cpu")
    mods = ("audio", "video", "text")
    want = {f"{k}_{m}" for k in ("recon", "commit", "club") for m in mods} | {"cpc", "cmcm"}
    fitter = EstimatorFitter(model.estimators(), 5, 1e-3)
    opt = adam(main_parameters(model), 1e-3)
    club_before = [p.clone() for p in model.clubs.parameters()]
    enc_before = model.branches["audio"].general_net.proj.weight.clone()
    losses, _ = train_step(model, batch, opt, Step(0, 0, torch.Generator().manual_seed(0), fitter), 0.5,
                           model.clip_groups())
    assert set(losses) == want
    assert all(not torch.equal(a, b) for a, b in zip(club_before, model.clubs.parameters()))
    assert not torch.equal(enc_before, model.branches["audio"].general_net.proj.weight)
    assert not any(p.requires_grad for p in model.clubs.parameters())
    assert {id(p) for p in model.clubs.parameters()}.isdisjoint({id(p) for p in main_parameters(model)})
    off = DCIDModel(shapes, {**s, "club": False, "cpc": False, "cmcm": False})
    assert set(off.losses(batch)) == {f"{k}_{m}" for k in ("recon", "commit") for m in mods}


@pytest.mark.parametrize("shape", [(4, 512 // 64), (4, 7, 7, 8), (4, 3, 3, 8)])
def test_branches_accept_pooled_and_spatial_features(shape):
    s = resolve_settings({"scale": "default", "code_dim": 8})
    torch.manual_seed(0)
    branch = ModalityBranch("video", shape, s)
    x = torch.rand(2, *shape)
    z = branch.general(branch.inputs(x))
    side, club_y = branch.specific(x)
    assert z.shape == (2, 4, 8) and club_y.shape == (2, 4, branch.club_dim)
    assert branch.decode(z, side).shape == x.shape
    alone = ModalityBranch("video", shape, s, specific=False, decoder_side=False)
    assert alone.decode(alone.general(x), None).shape == x.shape


def test_text_front_end_is_the_reconstruction_target():
    s = resolve_settings({"scale": "default", "code_dim": 8})
    branch = ModalityBranch("text", (5, 12), s, text_front=True)
    feats = branch.inputs(torch.randn(3, 5, 12))
    assert feats.shape == (3, 5, 2 * s["text_hidden"]) and feats.requires_grad
    assert branch.decode(branch.general(feats), branch.specific(feats)[0]).shape == feats.shape


@pytest.mark.parametrize("over, code_shape", [({"quantizer": "rvq", "levels": 2}, (40, 5, 2)),
                                              ({"quantizer": "fsq", "levels": "4x3x3"}, (40, 5)),
                                              ({"dtype": "float64", "club": False}, (40, 5))])
def test_quantizer_and_precision_variants_pretrain(over, code_shape):
    steps = []
    ctx = RunContext(progress=lambda it, description="", total=None: steps.append(total) or it)
    pretrained, _ = run({**over, "epochs": 1}, ctx=ctx)
    x = tiny_corpus().arrays["text"]
    assert tuple(pretrained.codes("text", x).shape) == code_shape
    assert pretrained.encode("text", x).dtype == torch.float32
    assert steps[0] == 2                                             # one progress bar per epoch, 2 batches
    d = pretrained.diagnostics()
    if over.get("quantizer") == "rvq":
        assert len(d["levels"]) == 2 and len(pretrained.codebooks) == 2
    if over.get("quantizer") == "fsq":
        assert d["codebook_size"] == 36 and pretrained.codebooks[0].shape == (36, 8)
    if over.get("dtype") == "float64":
        assert next(pretrained.model.parameters()).dtype == torch.float64


@pytest.mark.parametrize("over, message", [
    ({"quantizer": "rvq", "levels": "8x5"}, "number of residual levels"),
    ({"quantizer": "fsq", "levels": 3}, "per-dim level counts"),
    ({"levels": 2}, "not vq"),
    ({"code_dim": 10}, "divisible"),
    ({"epochs": 0}, "positive integer"),
    ({"decay": 1.5}, "decay"),
])
def test_bad_options_are_user_errors(over, message):
    entry = registry.get("method", "dcid")
    with pytest.raises(UserError, match=message):
        entry.load().validate(entry.resolve(over))


def test_corpus_problems_are_user_errors():
    rng = np.random.default_rng(0)
    one = ArrayCorpus({"audio": rng.standard_normal((8, 5, 4))})
    with pytest.raises(UserError, match="at least 2"):
        run(corpus=one)
    uneven = ArrayCorpus({"audio": rng.standard_normal((8, 5, 4)), "text": rng.standard_normal((8, 6, 4))})
    with pytest.raises(UserError, match="same T"):
        run(corpus=uneven)
    short = ArrayCorpus({"audio": rng.standard_normal((8, 2, 4)), "text": rng.standard_normal((8, 2, 4))})
    with pytest.raises(UserError, match="cpc_horizon"):
        run(corpus=short)


def test_card_exposes_the_issue_options():
    options = registry.get("method", "dcid").options
    for key in ("scale", "quantizer", "levels", "codebook_size", "code_dim", "epochs", "batch_size", "lr", "dtype"):
        assert key in options
    assert options["scale"].choices == ("default", "paper", "smoke") and options["dtype"].default == "float32"
    paper = resolve_settings({"scale": "paper"})
    assert (paper["code_dim"], paper["codebook_size"], paper["layers"], paper["heads"], paper["ffn"]) == (
        256, 400, 2, 4, 1024)
    assert (paper["lr"], paper["batch_size"], paper["clip"], paper["epochs"], paper["video_widths"][-1]) == (
        4e-4, 80, 0.5, 6, 2048)
