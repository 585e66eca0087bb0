"""TOC (seed 000 Eqs. 15-17, issue 7): scores, selection, the `+toc` refiner, refusals, and the Fig. 2 heatmap."""
from __future__ import annotations

import json
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import registry, spec
from benchmark.contracts import Pretrained, RunContext, UserError
from methods.toc import (TOC, inter_code_similarity, inter_code_variance, select_dims, toc_scores)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEFAULT = {"q": 2, "lam": 0.3, "criterion": "both", "max": 1, "min": 0}


def random_codebook(seed: int, n: int = 9, d: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.rand(d, generator=g) + torch.randn(d, generator=g)


# --------------------------------------------------------------------------- Eqs. 15-17
HAND = torch.tensor([[1.0, 2.0], [3.0, 0.0], [-1.0, 1.0]])  # L = 3 codes, D = 2 dims


def test_scores_on_a_hand_computed_codebook():
    # dim 0 = (1, 3, -1): unordered products 1·3 + 1·(-1) + 3·(-1) = -1, ordered pairs twice that over 3·2 pairs
    # dim 1 = (2, 0, 1): 0 + 2 + 0 = 2 -> 4 / 6.  Unbiased variances: (0 + 4 + 4) / 2 = 4 and (1 + 1 + 0) / 2 = 1.
    assert torch.allclose(inter_code_similarity(HAND), torch.tensor([-1 / 3, 2 / 3], dtype=torch.float64))
    assert torch.allclose(inter_code_variance(HAND), torch.tensor([4.0, 1.0], dtype=torch.float64))
    u = toc_scores(HAND, lam=0.3)
    assert torch.allclose(u, torch.tensor([0.3 * 4 + 0.7 / 3, 0.3 * 1 - 0.7 * 2 / 3], dtype=torch.float64))
    assert select_dims(u, 1).tolist() == [0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_similarity_equals_the_pairwise_definition(seed):
    e = random_codebook(seed).double()
    n = e.shape[0]
    brute = sum(e[i] * e[j] for i, j in permutations(range(n), 2)) / (n * (n - 1))  # O(L²·D), Eq. 15 as written
    assert torch.allclose(inter_code_similarity(e), brute, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_paper_normalisation_selects_the_same_dims_as_the_code(lam):
    """Paper: S with 1/L², V with 1/L. Both are (L−1)/L times the code's, so U_k only rescales."""
    e = random_codebook(3, n=11, d=16).double()
    n = e.shape[0]
    s_paper = ((e.sum(0) ** 2) - (e ** 2).sum(0)) / n ** 2
    v_paper = e.var(0, unbiased=False)
    u_paper = lam * v_paper - (1 - lam) * s_paper
    u_code = toc_scores(e, lam)
    assert torch.allclose(u_paper, u_code * (n - 1) / n)
    assert select_dims(u_paper, 7).tolist() == select_dims(u_code, 7).tolist()


def test_similarity_and_variance_ablations_rank_differently():
    # dim 0: large offset and large spread (high S, high V); dim 1: centred and narrow (low S, low V)
    e = torch.tensor([[5.0, 0.1], [7.0, -0.1], [3.0, 0.1], [9.0, -0.1]])
    assert select_dims(toc_scores(e, criterion="var"), 1).tolist() == [0]
    assert select_dims(toc_scores(e, criterion="sim"), 1).tolist() == [1]
    with pytest.raises(UserError, match="criterion"):
        toc_scores(e, criterion="nope")


# --------------------------------------------------------------------------- selection
SCORES = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0])


@pytest.mark.parametrize("q, n_max, n_min, expected", [
    (3, 1, 0, [0, 1, 2]),           # plain top-q
    (4, 3, 1, [0, 1, 2, 7]),        # released 3:1 split: top 3 + bottom 1
    (4, 1, 1, [0, 1, 6, 7]),        # 1:1
    (6, 3, 1, [0, 1, 2, 7]),        # q not a multiple of max+min: ⌊6/4⌋ = 1 unit, as coded
    (8, 1, 0, list(range(8))),      # q = D keeps everything
])
def test_select_dims_top_and_bottom_split(q, n_max, n_min, expected):
    assert select_dims(SCORES, q, n_max, n_min).tolist() == expected


def test_select_dims_is_order_independent_and_returns_ascending_indices():
    perm = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])
    kept = select_dims(SCORES[perm], 3)
    assert kept.tolist() == sorted(kept.tolist())
    assert sorted(SCORES[perm][kept].tolist()) == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("q, n_max, n_min, message", [
    (9, 1, 0, "q must be in 1..8"),
    (0, 1, 0, "q must be in 1..8"),
    (2, 3, 1, "keeps no dimension"),
])
def test_select_dims_rejects_impossible_requests(q, n_max, n_min, message):
    with pytest.raises(UserError, match=message):
        select_dims(SCORES, q, n_max, n_min)


# --------------------------------------------------------------------------- the refiner
class FakeDiscrete(Pretrained):
    """encode = concatenation (or sum, `shared=True`) of per-codebook code vectors chosen by `codes`."""

    method = "fake"

    def __init__(self, books, shared=False, discrete=True):
        self.books, self.shared, self.discrete = books, shared, discrete

    @property
    def dim(self):
        return self.books[0].shape[1] if self.shared else sum(b.shape[1] for b in self.books)

    @property
    def modalities(self):
        return ("audio", "video")

    @property
    def codebooks(self):
        return list(self.books)

    def codes(self, modality, x):
        x = torch.as_tensor(x)
        return torch.stack([(x.sum(-1).long() + i) % b.shape[0] for i, b in enumerate(self.books)], -1)

    def encode(self, modality, x):
        idx = self.codes(modality, x)
        parts = [b[idx[..., i]] for i, b in enumerate(self.books)]
        return sum(parts) if self.shared else torch.cat(parts, -1)

    def diagnostics(self):
        return {"base": "kept"}


X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)   # [N, T, F]


def refine(pretrained, **over):
    return TOC().refine(pretrained, {**DEFAULT, **over}, RunContext())


def test_refined_encode_is_the_base_encode_sliced_to_the_selected_dims():
    book = random_codebook(4, n=7, d=6)
    base = FakeDiscrete([book])
    out = refine(base, q=3)
    kept = select_dims(toc_scores(book, 0.3), 3)
    assert out.dim == 3 and out.discrete and out.modalities == base.modalities
    assert torch.equal(out.encode("audio", X), base.encode("audio", X)[..., kept])
    assert torch.equal(out.codes("video", X), base.codes("video", X))          # codes: full-D search, unchanged
    assert torch.equal(out.codebooks[0], book[:, kept])
    diag = json.loads(json.dumps(out.diagnostics()))                          # JSON-serialisable
    assert diag["base"] == "kept" and diag["toc"]["selected"] == [kept.tolist()] and len(diag["toc"]["scores"][0]) == 6


def test_multi_layer_codebooks_are_selected_per_layer_and_concatenated():
    first, second = random_codebook(5, n=7, d=4), random_codebook(6, n=5, d=6)
    base = FakeDiscrete([first, second])
    out = refine(base, q=2, criterion="var")
    k1 = select_dims(toc_scores(first, criterion="var"), 2)
    k2 = select_dims(toc_scores(second, criterion="var"), 2)
    assert out.dim == 4
    assert torch.equal(out.encode("audio", X), base.encode("audio", X)[..., torch.cat([k1, k2 + 4])])
    assert [cb.shape for cb in out.codebooks] == [(7, 2), (5, 2)]
    assert out.diagnostics()["toc"]["selected"] == [k1.tolist(), k2.tolist()]


def test_kept_variance_share_and_the_warning_on_an_offset_codebook():
    """A ReLU-like codebook (all codes ≥ 0): an active dim (mean 1, variance 0.25) and a near-dead one (mean 0.01,
    variance 1e-4). S ≈ mean², so U = 0.3·0.25 − 0.7·~1 < 0 for the active dim and ≈ 0 for the dead one: Eq. 17
    keeps the dead dim, which holds 1e-4 / 0.2501 of the variance — recorded, and warned about."""
    book = torch.tensor([[0.5, 0.0], [1.5, 0.02], [1.0, 0.01]])     # var: 0.25 and 1e-4; means 1.0 and 0.01
    logs = []
    ctx = RunContext()
    ctx.log = logs.append
    out = TOC().refine(FakeDiscrete([book]), {**DEFAULT, "q": 1}, ctx)
    assert out.selection.layers[0].tolist() == [1]
    share = out.diagnostics()["toc"]["kept_variance_share"]
    assert share == [round(1e-4 / (0.25 + 1e-4), 4)]
    assert any("hold only 0% of the codebook's inter-code variance" in m for m in logs), logs
    assert TOC().refine(FakeDiscrete([book]), {**DEFAULT, "q": 1, "criterion": "var"},
                        RunContext()).diagnostics()["toc"]["kept_variance_share"] == [round(0.25 / 0.2501, 4)]


def test_default_q_keeps_half_of_every_codebook():
    out = refine(FakeDiscrete([random_codebook(1, n=7, d=4), random_codebook(2, n=5, d=6)]), q=None)
    assert out.dim == 2 + 3 and [cb.shape[1] for cb in out.codebooks] == [2, 3]


def test_residual_levels_share_one_selection_from_the_first_level():
    levels = [random_codebook(7, n=6, d=5), random_codebook(8, n=6, d=5) * 0.1]
    base = FakeDiscrete(levels, shared=True)
    out = refine(base, q=3)
    kept = select_dims(toc_scores(levels[0], 0.3), 3)
    assert out.dim == 3 and out.layout == "shared"
    assert torch.equal(out.encode("audio", X), base.encode("audio", X)[..., kept])


def test_refiner_rejects_continuous_models_and_bad_options():
    with pytest.raises(UserError, match="needs a discrete method"):
        refine(FakeDiscrete([random_codebook(0)], discrete=False))
    with pytest.raises(UserError, match="q must be in 1..6"):
        refine(FakeDiscrete([random_codebook(0)]), q=7)
    with pytest.raises(UserError, match="lam must be in"):
        refine(FakeDiscrete([random_codebook(0)]), lam=1.5)


def test_toc_card_parses_and_options_change_the_canonical_spec():
    m = spec.parse_method("tinymethod+toc@q=4,criterion=sim")
    assert m.canonical() == "tinymethod+toc@criterion=sim,q=4"
    assert m.refiners[0].cfg == {"q": 4, "lam": 0.3, "criterion": "sim", "max": 1, "min": 0}
    assert spec.parse_method("tinymethod+toc").refiners[0].cfg["q"] is None     # half the width
    with pytest.raises(UserError, match="must be one of"):
        spec.parse_method("tinymethod+toc@criterion=both_")


# --------------------------------------------------------------------------- refusing continuous methods (spec)
@pytest.fixture
def with_continuous_card():
    """Adds the hidden test-only continuous method `fakecontinuous` from tests/fixtures/ to the registry."""
    with registry.include_path(FIXTURES):
        yield


def test_plus_toc_on_a_continuous_method_exits_2_with_a_clear_message(with_continuous_card, capsys):
    from benchmark.__main__ import main
    with pytest.raises(UserError, match="refiner 'toc' needs a discrete method"):
        spec.parse_method("fakecontinuous+toc")
    code = main(["run", "--method", "fakecontinuous+toc", "--task", "tinytask", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [err]
    assert "'fakecontinuous' is continuous" in err


@pytest.mark.skipif("simmmdg" not in registry.entries("method"), reason="simmmdg not registered yet")
def test_plus_toc_on_simmmdg_is_refused():
    with pytest.raises(UserError, match="'simmmdg' is continuous"):
        spec.parse_method("simmmdg+toc")


# --------------------------------------------------------------------------- Fig. 2 heatmap
def test_cosine_matrix_and_off_diagonal_mean_on_a_hand_case():
    from benchmark.plots import cosine_similarity_matrix, mean_off_diagonal
    cos = cosine_similarity_matrix(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    assert np.allclose(cos, [[1, 2 ** -0.5, 0], [2 ** -0.5, 1, 0], [0, 0, 0]])
    assert mean_off_diagonal(np.array([[1.0, 0.2], [0.4, 1.0]])) == pytest.approx(0.3)


def test_toc_heatmap_drops_shared_offset_dims_and_codes_become_more_distinct(tmp_path):
    from benchmark.plots import toc_heatmap
    rng = np.random.default_rng(0)
    informative = rng.standard_normal((50, 4))
    offset = 3.0 + 0.05 * rng.standard_normal((50, 4))   # every code shares these values: high S_k, low V_k
    codebook = np.concatenate([informative, offset], 1)
    kept = select_dims(toc_scores(torch.from_numpy(codebook)), 4).tolist()
    assert kept == [0, 1, 2, 3]
    summary = toc_heatmap(codebook, kept, tmp_path / "out" / "fig2.png")
    assert Path(summary["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["mean_cos_after"] < 0.1 < 0.5 < summary["mean_cos_before"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fig2.png"]     # no temp file left behind


def test_plot_toc_heatmap_cli(tmp_path, capsys):
    from benchmark.__main__ import main
    book = random_codebook(9, n=20, d=16).numpy()
    np.save(tmp_path / "cb.npy", book)
    torch.save({"codebook": torch.from_numpy(book), "other": torch.zeros(3, 3)}, tmp_path / "cb.pt")
    assert main(["plot", "toc-heatmap", "--codebook", str(tmp_path / "cb.npy"), "--q", "8",
                 "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").exists() and "kept 8 of 16 dims" in capsys.readouterr().out
    assert main(["plot", "toc-heatmap", "--codebook", str(tmp_path / "cb.pt"), "--key", "codebook",
                 "--q", "8", "--out", str(tmp_path / "b.png")]) == 0
    # a model's state dict: the codebook by name, not a list of every weight matrix
    state = {f"branches.audio.layers.{i}.weight": torch.randn(16, 16) for i in range(70)}
    torch.save({**state, "quantizer.embedding": torch.from_numpy(book), "layer2_on": torch.tensor(True)},
               tmp_path / "model.pt")
    capsys.readouterr()
    assert main(["plot", "toc-heatmap", "--codebook", str(tmp_path / "model.pt"), "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "('quantizer.embedding'): 20 codes, kept 8 of 16 dims" in out and "layers.3" not in out
    torch.save({"a": torch.zeros(3, 3), "b": torch.zeros(4, 4)}, tmp_path / "two.pt")
    for argv, message in [
        (["--codebook", str(tmp_path / "two.pt")], "holds 2 2-D arrays (a, b) and none is named like a codebook"),
        (["--codebook", str(tmp_path / "cb.npy"), "--q", "17"], "q must be in 1..16"),
        (["--codebook", str(tmp_path / "missing.npy")], "does not exist"),
    ]:
        capsys.readouterr()
        assert main(["plot", "toc-heatmap", *argv, "--out", str(tmp_path / "c.png")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


# --------------------------------------------------------------------------- Q per task, the random control
def test_default_q_follows_the_released_share_of_the_width_for_the_cells_task():
    """The card's facts: AVE keeps all 64 of 64 dims (no selection, as released), AVVP 196/256 of them -> 49,
    AVE->AVVP half, UCF<->VGG 168/256 -> 42; a task without a released script keeps half."""
    toc = registry.get("refiner", "toc").load()
    cfg = {**DEFAULT, "q": None}
    base = FakeDiscrete([random_codebook(3, n=20, d=64)])
    kept = {task: toc.refine(base, cfg, RunContext(task=task)).dim
            for task in ("ave", "avvp", "ave_avvp", "ucf_vgg", "retrieval")}
    assert kept == {"ave": 64, "avvp": 49, "ave_avvp": 32, "ucf_vgg": 42, "retrieval": 32}
    out = toc.refine(base, cfg, RunContext(task="avvp"))
    assert out.diagnostics()["toc"]["options"]["q_fraction"] == 0.765625
    whole = toc.refine(base, cfg, RunContext(task="ave"))
    assert whole.encode("audio", X) is not None and torch.equal(whole.encode("audio", X), base.encode("audio", X))


def test_toc_random_keeps_the_same_number_of_dims_drawn_by_seed_and_draw():
    rand = registry.get("refiner", "toc-random").load()
    base = FakeDiscrete([random_codebook(5, n=20, d=64), random_codebook(6, n=20, d=64)])
    draw = lambda seed, d=0: rand.refine(base, {"q": None, "draw": d}, RunContext(task="avvp", seed=seed))
    a, again, other_seed, other_draw = draw(0), draw(0), draw(1), draw(0, d=1)
    assert a.dim == 2 * 49 and a.method == "fake+toc-random"
    assert torch.equal(a.selection.index, again.selection.index)                  # deterministic
    assert not torch.equal(a.selection.index, other_seed.selection.index)        # seeds draw other dims
    assert not torch.equal(a.selection.index, other_draw.selection.index)
    criterion = registry.get("refiner", "toc").load().refine(base, {**DEFAULT, "q": None}, RunContext(task="avvp"))
    assert not torch.equal(a.selection.index, criterion.selection.index)
    assert torch.equal(a.encode("audio", X), base.encode("audio", X)[..., a.selection.index])


def test_head_width_is_the_input_width_but_never_below_min_hidden():
    from tasks.heads import head_width
    assert head_width({"hidden": None, "min_hidden": 128}, 32) == 128     # TOC's Q does not shrink the head
    assert head_width({"hidden": None, "min_hidden": 128}, 256) == 256    # the released rule at D = 256
    assert head_width({"hidden": 16, "min_hidden": 128}, 256) == 16
