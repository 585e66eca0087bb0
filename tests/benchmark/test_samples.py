"""Per-sample predictions (`--log-samples`) and test-set sizes: every reported metric is recomputed from the
samples a task recorded, with plain numpy (not the task's own scorer), and must equal the reported number."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.contracts import RunContext
from benchmark.results import SAMPLES, read_samples, write_samples
from benchmark.store import Store
from conftest import perfect_encoder, random_encoder
from test_tasks import FAST, run

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def logging_ctx(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return RunContext(scratch=scratch, log_samples=True)


def micro_f1(target: np.ndarray, pred: np.ndarray) -> float:
    """Segment F1 % over event columns (the background column, last, left out), counted by hand."""
    t, p = target[..., :-1].astype(bool), pred[..., :-1].astype(bool)
    tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
    return 200.0 * tp / (2 * tp + fp + fn) if tp else 0.0


@pytest.mark.parametrize("name", ["ave", "ucf_vgg"])
@pytest.mark.parametrize("encoder", [random_encoder, perfect_encoder])
def test_classification_samples_give_the_reported_accuracy(name, encoder, tiny_world, logging_ctx):
    out, _ = run(name, encoder(), tiny_world, logging_ctx)
    assert set(logging_ctx.samples) == set(out)
    for direction, s in logging_ctx.samples.items():
        assert (s["pred"] == s["scores"].argmax(-1)).all()
        assert np.mean(s["pred"] == s["target"]) * 100 == pytest.approx(out[direction]["acc"], abs=1e-9)
        assert logging_ctx.test_sizes[direction] == {"clips": len(s["target"]), "classes": s["scores"].shape[1]}


@pytest.mark.parametrize("name", ["avvp", "ave_avvp"])
@pytest.mark.parametrize("protocol", ["clean", "reference"])
def test_detection_samples_give_the_reported_f1_at_the_stored_threshold(name, protocol, tiny_world, logging_ctx):
    out, _ = run(name, random_encoder(), tiny_world, logging_ctx, protocol=protocol)
    for direction, s in logging_ctx.samples.items():
        assert ((s["scores"] > s["threshold"]) == s["pred"]).all()
        n, t, _ = s["target"].shape
        assert logging_ctx.test_sizes[direction] == {"clips": n, "seconds": n * t}
        if protocol == "clean":
            assert micro_f1(s["target"], s["pred"]) == pytest.approx(out[direction]["f1"], abs=1e-9)
        else:   # the released batch-averaged metric, background included
            from tasks.metrics import reference_prf
            assert reference_prf(s["target"], s["pred"], FAST["batch_size"]) == pytest.approx(out[direction])


@pytest.mark.parametrize("encoder", [random_encoder, perfect_encoder])
def test_retrieval_ranks_give_the_reported_recall_at_1(encoder, tiny_world, logging_ctx):
    out, _ = run("retrieval", encoder(), tiny_world, logging_ctx)
    for direction, s in logging_ctx.samples.items():
        if not s:            # a pair row (V<->T): the mean of its two directions, nothing per query
            assert "<->" in direction
            continue
        # a hit at 1 needs no irrelevant item above; ties count by the chance a relevant one comes first
        hit = np.where(s["rank"] == 1, s["tied_relevant"] / (s["tied"] + s["tied_relevant"]), 0.0)
        assert hit.mean() * 100 == pytest.approx(out[direction]["R@1"], abs=1e-9)
        assert logging_ctx.test_sizes[direction]["queries"] == len(s["rank"])
    assert logging_ctx.test_sizes["V<->T"]["queries"] == sum(logging_ctx.test_sizes[d]["queries"]
                                                               for d in ("V->T", "T->V"))


def test_toc_recon_samples_give_the_reported_mse_and_count(tmp_path, logging_ctx):
    from test_toc_recon import TINY
    entry = registry.get("task", "toc_recon")
    logging_ctx.artifacts = tmp_path
    out = entry.load().evaluate(None, None, entry.resolve(TINY), 0, logging_ctx)
    for direction, s in logging_ctx.samples.items():
        assert s["mse_toc"].mean() == pytest.approx(out[direction]["mse_toc"], rel=1e-5)
        assert s["mse_random"].mean() == pytest.approx(out[direction]["mse_random"], rel=1e-5)
        assert int((s["mse_random_masks"] > out[direction]["mse_toc"]).sum()) == out[direction]["count"]
        assert logging_ctx.test_sizes[direction] == {"images": len(s["mse_toc"])}
    # its VQ-VAE is the cell's pretraining: the per-epoch losses become the cell's loss history
    (epoch,) = logging_ctx.diagnostics["training"]["loss_history"]          # TINY trains one epoch
    assert epoch["total"] == pytest.approx(epoch["recon"] + epoch["commitment"]) and epoch["recon"] > 0


def test_without_the_switch_only_the_sizes_are_kept(tiny_world, ctx):
    run("ave", random_encoder(), tiny_world, ctx)
    assert ctx.samples == {} and set(ctx.test_sizes) == {"V->A", "A->V", "V->V", "A->A"}


def test_samples_file_round_trips(tmp_path):
    samples = {"V->A": {"pred": np.arange(3), "scores": np.ones((3, 2), np.float32)}, "V<->T": {},
               "mask37.5": {"mse_toc": np.zeros(4)}}
    write_samples(tmp_path / SAMPLES, samples)
    back = read_samples(tmp_path / SAMPLES)
    assert set(back) == {"V->A", "mask37.5"}
    assert (back["V->A"]["pred"] == np.arange(3)).all() and back["V->A"]["scores"].dtype == np.float32


# --------------------------------------------------------------------------- end to end
def cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    from tasks.data import synthesize
    out = tmp_path_factory.mktemp("world")
    synthesize("smoke", 0, out)
    return out


def test_log_samples_recomputes_a_cell_without_them_and_keeps_the_pretraining(smoke_world, tmp_path):
    store = tmp_path / "store"
    args = ("run", "--method", "cca", "--task", "ave", "--data", smoke_world, "--results", store, "-q")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    (result,) = Store(store).results()
    assert not (Path(result.directory) / SAMPLES).exists()
    assert result.test_sizes["V->A"]["clips"] > 0
    second = cli(*args, "--log-samples")
    assert second.returncode == 0 and "ran 1" in second.stderr, second.stderr
    (again,) = Store(store).results()
    assert again.metrics == result.metrics and again.key == result.key
    assert again.notes["pretrain"].startswith("cached")
    samples = again.samples()
    for direction, s in samples.items():
        assert np.mean(s["pred"] == s["target"]) * 100 == pytest.approx(again.metrics[direction]["acc"])
    assert json.loads((Path(again.directory) / "config.json").read_text())["unhashed"]["log_samples"] is True
    third = cli(*args, "--log-samples")
    assert "cached 1" in third.stderr, third.stderr
    # recomputed without the switch: the samples of the earlier computation are not left behind
    cli(*args, "--overwrite", "always")
    assert not (Path(again.directory) / SAMPLES).exists()
