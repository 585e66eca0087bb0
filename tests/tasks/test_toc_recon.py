"""toc_recon (seed 000 Table 3 / Fig. 3, issue 7): VQ-VAE on 8×8 digits, TOC masks vs random masks."""
from __future__ import annotations

import pytest
import torch

from benchmark import registry, spec, world
from benchmark.contracts import RunContext, UserError
from methods.vqvae import VQVAE, VQVAEMethod, train_vqvae
from tasks.toc_recon import MASK_RATIOS, TOCRecon, digits_split, direction, mask_dims, masked_mse

TINY = {"epochs": 1, "codebook_size": 16, "dim": 8, "hidden": 8, "n_random": 5, "batch_size": 128}


def tiny_cfg(**over):
    return registry.get("task", "toc_recon").resolve({**TINY, **over})


def test_directions_name_the_mask_ratios():
    assert [direction(r) for r in MASK_RATIOS] == ["mask25", "mask37.5", "mask50", "mask62.5", "mask75", "mask87.5"]


def test_mask_keeps_selected_dims_and_fills_the_rest():
    q = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    assert mask_dims(q, [0, 2], torch.zeros(3)).flatten().tolist() == [1.0, 0.0, 3.0]
    assert mask_dims(q, [0, 2], torch.tensor([9.0, 8.0, 7.0])).flatten().tolist() == [1.0, 8.0, 3.0]


class SumDecoder:
    """decode = sum over the code dims: [N, D, h, w] -> [N, 1, h, w]."""

    @staticmethod
    def decode(q):
        return q.sum(1, keepdim=True)


def test_masked_mse_on_a_hand_case():
    q = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, 1)
    zeros = torch.zeros(2)
    assert masked_mse(SumDecoder, q, target, [0], zeros)[0] == 1.0        # (1)²
    assert masked_mse(SumDecoder, q, target, [1], zeros)[0] == 4.0        # (2)²
    assert masked_mse(SumDecoder, q, target, [0, 1], zeros)[0] == 9.0     # (1 + 2)²
    assert masked_mse(SumDecoder, q, target, [0], torch.tensor([0.0, -1.0]))[0] == 0.0   # 1 + (−1)


def test_digits_split_is_seeded_disjoint_and_complete():
    train, test = digits_split(0, 0.2)
    assert train.shape[1:] == test.shape[1:] == (1, 8, 8)
    assert len(test) == 359 and len(train) + len(test) == 1797
    assert 0.0 <= float(train.min()) and float(train.max()) <= 1.0
    again, other = digits_split(0, 0.2)[1], digits_split(1, 0.2)[1]
    assert torch.equal(test, again) and not torch.equal(test, other)


def test_vqvae_quantizes_to_codebook_rows_and_training_is_seeded(one_thread):
    images = digits_split(0, 0.2)[1][:64]
    kw = dict(codebook_size=8, dim=8, hidden=8, beta=0.25, epochs=10, batch_size=16, lr=5e-3)
    a, b = train_vqvae(images, seed=3, **kw), train_vqvae(images, seed=3, **kw)
    assert all(torch.equal(p, r) for p, r in zip(a.state_dict().values(), b.state_dict().values()))
    q, codes = a.encode_quantized(images)
    assert q.shape == (64, 8, 4, 4) and codes.shape == (64, 16)
    assert torch.equal(q.flatten(2).transpose(1, 2), a.codebook[codes])     # each position holds its code's row
    untrained = VQVAE(8, 8, 8)
    full = torch.arange(8)
    assert masked_mse(a, q, images, full, torch.zeros(8))[0] < \
        masked_mse(untrained, untrained.encode_quantized(images)[0], images, full, torch.zeros(8))[0]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_vqvae(images, seed=5, **{**kw, "epochs": 1})
    assert torch.equal(torch.rand(3), expected)    # training leaves the caller's global RNG stream untouched


def test_evaluate_reports_table3_layout_and_writes_the_figure(tmp_path, one_thread):
    ctx = RunContext(artifacts=tmp_path)
    task = TOCRecon()
    metrics = task.evaluate(None, None, tiny_cfg(), 0, ctx)
    assert list(metrics) == [direction(r) for r in MASK_RATIOS]
    for values in metrics.values():
        assert set(values) == {"mse_toc", "mse_random", "count"}
        assert values["mse_toc"] > 0 and values["mse_random"] > 0 and 0 <= values["count"] <= 5
    notes = ctx.notes["toc_recon"]
    assert notes["figure"] == str(tmp_path / "toc_recon_fig3.png")
    assert (tmp_path / "toc_recon_fig3.png").read_bytes()[:4] == b"\x89PNG"
    assert notes["test_images"] == 359 and 1 <= notes["codes_used"] <= 16 and notes["mse_unmasked"] > 0
    assert task.evaluate(None, None, tiny_cfg(), 0, RunContext()) == metrics   # same seed -> same numbers


@pytest.mark.parametrize("over, message", [
    ({"dim": 12}, "multiple of 8"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"n_random": 0}, "n_random"),
    ({"lam": 2.0}, "lam must be in"),
])
def test_task_rejects_bad_options(over, message):
    with pytest.raises(UserError, match=message):
        TOCRecon().validate(tiny_cfg(**over))


def test_cards_make_vqvae_toc_recon_a_self_contained_cell():
    assert spec.parse_method("vqvae").discrete
    assert world.task_datasets(spec.parse_task("toc_recon")) == ((), False)
    assert "toc_recon" not in __import__("benchmark.api", fromlist=["all_tasks"]).all_tasks()
    with pytest.raises(UserError, match="trained inside the toc_recon task"):
        VQVAEMethod().pretrain(None, {}, 0, RunContext())
