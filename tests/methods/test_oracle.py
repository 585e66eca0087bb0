"""The oracle: each clip encoded as its stored true semantic latent, the ceiling row of every table (issue 24)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import registry
from benchmark.contracts import NotApplicable, RunContext, UserError
from tasks.data import open_world, synthesize
from test_tasks import run


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    v3 = synthesize("smoke", 0, tmp_path_factory.mktemp("v3"), version=3)
    v2 = synthesize("smoke", 0, tmp_path_factory.mktemp("v2"), version=2, only=["pretrain", "ave"])
    return open_world(v3), open_world(v2)


def oracle(world, **options):
    entry = registry.get("method", "oracle")
    method = entry.load()
    return method.pretrain(world.corpus(), entry.resolve(options), 0, RunContext())


def test_oracle_encodes_each_clip_as_its_true_semantics(worlds):
    world, _ = worlds
    pre = oracle(world)
    assert pre.modalities == ("audio", "video", "text") and pre.dim == 16 and not pre.discrete
    from tasks.common import FeatureCache
    ave = world.open("ave")
    got = FeatureCache(pre, RunContext()).get(ave, "ave", "video", "test").x
    np.testing.assert_array_equal(got, ave.latent("video", "semantic", ave.split("test")))
    with pytest.raises(UserError, match="not a function of its features"):
        pre.encode("audio", ave.read("audio", [0]))


def test_oracle_is_the_ceiling_of_transfer_and_retrieval(worlds, tmp_path):
    """The same vector in every modality: cross-modal AVE transfer is as good as same-modality and far above what
    raw features reach; retrieval of a clip's caption by its video is near perfect."""
    world, _ = worlds
    ctx = RunContext(scratch=tmp_path)
    scores, _ = run("ave", oracle(world), world, ctx, directions="V->A;A->V;A->A")
    raw, _ = run("ave", registry.get("method", "raw").load().pretrain(world.corpus(), {}, 0, RunContext()),
                 world, RunContext(), directions="A->A")
    assert min(s["acc"] for s in scores.values()) >= 75, (scores, raw)
    assert scores["A->A"]["acc"] > raw["A->A"]["acc"] + 20, (scores, raw)
    retrieval, _ = run("retrieval", oracle(world), world, RunContext(), directions="V->T;T->V")
    assert retrieval["V->T"]["R@10"] >= 90 and retrieval["T->V"]["R@10"] >= 90, retrieval


def test_oracle_is_not_applicable_without_latents(worlds, tmp_path):
    """Real (imported) data and version 2 worlds have no latent group: the oracle says n/a, it does not fail."""
    world, old = worlds
    with pytest.raises(NotApplicable, match="n/a on .*pretrain.h5"):
        oracle(old)
    with pytest.raises(NotApplicable, match="n/a on .*ave.h5"):
        oracle(world).encode_clips(old.open("ave"), "audio", np.arange(3))


def test_oracle_factor_option_and_persistence(worlds, tmp_path):
    world, _ = worlds
    scene = oracle(world, factor="scene")
    assert scene.dim == 8
    scene.save(tmp_path / "m")
    back = registry.get("method", "oracle").load().load(tmp_path / "m", {}, RunContext())
    ave = world.open("ave")
    np.testing.assert_array_equal(back.encode_clips(ave, "audio", [3, 1, 3]).numpy(),
                                  ave.latent("audio", "scene", [3, 1, 3]))
    with pytest.raises(UserError, match="option 'factor' must be one of"):
        oracle(world, factor="mood")


def test_oracle_on_data_without_latents_is_na_not_a_failure(worlds, tmp_path, capsys):
    """On a version 2 world (as on real data) the oracle's cell is n/a: the run exits 0, writes no error.json,
    and a table's optional oracle row reads n/a without counting it missing."""
    import yaml

    from benchmark.__main__ import main as cli_main
    store = tmp_path / "store"
    code = cli_main(["run", "--method", "oracle", "--task", "ave", "--data", str(worlds[1].root), "--results",
                     str(store), "--threads", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "n/a 1" in err and "failed 0" in err, err
    assert not list((store / "cells").rglob("error.json")) if (store / "cells").exists() else True
    grid = {"name": "ceil", "seeds": [0], "methods": ["oracle"], "tasks": ["ave"],
            "table": {"columns": [{"task": "ave", "direction": "V->A"}],
                      "rows": [{"method": "oracle", "label": "Oracle", "reference": True, "optional": True}]}}
    (tmp_path / "ceil.yaml").write_text(yaml.safe_dump(grid))
    assert cli_main(["table", str(tmp_path / "ceil.yaml"), "--results", str(store), "--out", str(tmp_path / "t"),
                     "--format", "md", "--strict"]) == 0, capsys.readouterr().err
    text = (tmp_path / "t" / "ceil.md").read_text()
    assert "| Oracle | n/a | n/a |" in text and "missing" not in text, text
