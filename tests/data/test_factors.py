"""Ground-truth factor probes (tasks/data/factors.py) on a tiny world where the answer is known (issue 24)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import registry
from benchmark.contracts import RunContext
from tasks.data import factors
from tasks.data import open_world, synthesize


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    v3 = open_world(synthesize("smoke", 0, tmp_path_factory.mktemp("v3"), version=3, only=["pretrain"]))
    v2 = open_world(synthesize("smoke", 0, tmp_path_factory.mktemp("v2"), version=2, only=["pretrain"]))
    return v3.corpus(), v2.corpus()


def pretrain(name, corpus, **options):
    entry = registry.get("method", name)
    return entry.load().pretrain(corpus, entry.resolve(options), 0, RunContext())


def test_a_representation_that_is_a_factor_explains_it_and_not_the_others(corpora):
    """The oracle's output IS the semantic latent: R² ≈ 1 for semantics, ≈ 0 for scene and nuisance (they are
    drawn independently of it); the nuisance oracle the other way round; in both modalities, on held-out clips."""
    corpus, _ = corpora
    semantic = factors.factor_probes(pretrain("oracle", corpus), corpus)
    nuisance = factors.factor_probes(pretrain("oracle", corpus, factor="nuisance"), corpus)
    assert semantic["fit"] == "train" and semantic["score"] == "test"
    assert semantic["clips"] == {"train": 180, "val": 60, "test": 60}
    for m in ("audio", "video"):
        r2 = semantic["r2"][m]["features"]
        assert r2["semantic"] > 0.99 and abs(r2["scene"]) < 0.1 and abs(r2["nuisance"]) < 0.1, (m, r2)
        r2 = nuisance["r2"][m]["features"]
        assert r2["nuisance"] > 0.99 and abs(r2["semantic"]) < 0.1 and abs(r2["scene"]) < 0.1, (m, r2)


def test_probes_are_scored_on_held_out_clips_never_the_fit():
    """A representation of pure noise memorises its training rows (more dims than rows) but explains nothing on
    the test split: held-out R² <= 0 while the in-sample fit would be perfect."""
    rng = np.random.default_rng(0)
    x = {s: rng.standard_normal((n, 50)) for s, n in (("train", 40), ("val", 40), ("test", 40))}
    y = {s: rng.standard_normal((40, 3)) for s in x}
    score, alpha = factors.ridge_r2(x, y)
    assert score < 0.05 and alpha in factors.ALPHAS
    w = np.linalg.lstsq(x["train"], y["train"] - y["train"].mean(0), rcond=None)[0]
    centred = y["train"] - y["train"].mean(0)
    fit = 1 - ((centred - x["train"] @ w) ** 2).sum() / (centred ** 2).sum()
    assert fit > 0.99


def test_codebook_methods_probe_codes_and_features_and_real_data_has_none(corpora):
    """A codebook method is probed on its quantized codes and its general features, a continuous one on what it
    encodes; a corpus without latents (real data, version 2 worlds) has no probes."""
    corpus, old = corpora
    cca = factors.factor_probes(pretrain("cca", corpus, dim=8), corpus)
    assert set(cca["r2"]["audio"]) == {"features"} and set(cca["r2"]["audio"]["features"]) == set(factors.FACTORS)
    probes = factors.factor_probes(pretrain("dcid", corpus, scale="smoke", epochs=1), corpus)
    assert set(probes["r2"]["video"]) == {"codes", "features"}
    assert all(-1 < v <= 1 for r in probes["r2"]["video"].values() for v in r.values()), probes["r2"]
    assert factors.factor_probes(pretrain("cca", old, dim=8), old) is None


def test_a_continuous_method_trained_on_a_labelled_view_carries_its_probes(corpora):
    """SimMMDG trains on its corpus wrapped with the clip labels; the probes still reach the true factors."""
    corpus, _ = corpora
    pre = pretrain("simmmdg", corpus, scale="smoke", epochs=1)
    r2 = pre.diagnostics()["factors"]["r2"]
    assert set(r2) >= {"audio", "video"} and set(r2["audio"]) == {"features"}, r2


def test_factor_table_and_figure_read_the_store(corpora, tmp_path, capsys):
    """Cells carry their pretraining's probes; `table factors` writes one row per pretraining (cells of other
    tasks and refined cells are not counted twice) and `plot report` draws the figure; a store without probes
    is an error for `table factors` and a warning for `table all`."""
    from benchmark.__main__ import main as cli_main
    world = corpora[0].file.path.parent
    synthesize("smoke", 0, world, version=3, only=["ave"])
    store = tmp_path / "store"
    assert cli_main(["run", "--method", "oracle", "cca", "--task", "ave", "--data", str(world), "--results",
                     str(store), "--seeds", "0", "1", "--threads", "1", "-q"]) == 0, capsys.readouterr().err
    assert cli_main(["table", "factors", "--results", str(store), "--format", "md,csv"]) == 0
    text = (store / "tables" / "factors.md").read_text()
    oracle = next(line for line in text.splitlines() if line.startswith("| Oracle"))
    assert oracle.count("1.00 ± 0.00") == 2 and "held out" in text, text
    rows = (store / "tables" / "factors.csv").read_text().splitlines()
    assert rows[0] == "method,seed,modality,representation,factor,r2" and len(rows) == 1 + 2 * 2 * 2 * 3
    from benchmark.report_plots import make_report_figures
    written, _ = make_report_figures(store)
    assert (store / "figures" / "factor_probes.png") in written
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert cli_main(["table", "factors", "--results", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: no pretraining in the store carries factor probes")
