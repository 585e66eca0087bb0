"""benchmark/migrate.py: an older store's pretrainings re-keyed by what they ran, once per store, by gc/grid only."""
from __future__ import annotations

import json

import benchmark
from benchmark import migrate
from benchmark import spec as specs
from benchmark.hashing import stable_hash
from benchmark.store import Store

CORPUS, SEED = "fp", 0


def old_pretraining(root, trained: int) -> str:
    """A `dcid` pretraining as an older store holds it: keyed by its options as written, `epochs: null`."""
    plain = specs.parse_method("dcid")
    old_key = stable_hash({"method": plain.pretrain_resolved(), "corpus": CORPUS, "seed": SEED,
                           "schema": specs.SCHEMA_VERSION})
    folder = root / "pretrain" / "dcid" / old_key
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({
        "method": plain.pretrain_resolved(), "corpus": CORPUS, "seed": SEED,
        "diagnostics": {"training": {"loss_history": [{"total": 1.0}] * trained}}}))
    (folder / "complete.json").write_text("{}")
    return old_key


def test_an_old_pretraining_is_keyed_by_the_budget_it_trained_never_by_todays_preset(tmp_path):
    """`dcid` trained under an older preset (half today's epochs) must become `dcid@epochs=<that>`; filed under
    today's `dcid` it would serve a shorter run as the preset's."""
    plain = specs.parse_method("dcid")
    trained = plain.base.entry.scales["default"]["epochs"] // 2
    old = old_pretraining(tmp_path, trained)
    assert migrate.trained_epochs(migrate.read_meta(tmp_path / "pretrain" / "dcid" / old)) == trained
    assert migrate.migrate(Store(tmp_path)) == 1
    want = specs.pretrain_key(specs.parse_method(f"dcid@epochs={trained}"), CORPUS, SEED)
    assert (tmp_path / "pretrain" / "dcid" / want / "meta.json").exists()
    assert not (tmp_path / "pretrain" / "dcid" / specs.pretrain_key(plain, CORPUS, SEED)).exists()


def test_a_store_is_migrated_once_unless_forced(tmp_path):
    store = Store(tmp_path)
    assert migrate.migrate(store) == 0 and (tmp_path / migrate.MARKER).exists()
    old_pretraining(tmp_path, 3)                  # appears after the migration: only a forced run (gc) sees it
    assert migrate.migrate(store) == 0
    assert migrate.migrate(store, force=True) == 1


def test_grid_and_gc_migrate_the_store_but_a_run_does_not(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(migrate, "migrate", lambda store, force=False: calls.append((store.root, force)) or 0)
    benchmark.evaluate("tinymethod", "tinytask", profile="smoke", results=tmp_path / "api")
    assert calls == []                            # no run rescans the store
    from benchmark.__main__ import main
    store, grid = tmp_path / "s", tmp_path / "tiny.yaml"
    grid.write_text("name: tiny\nprofile: smoke\nseeds: [0]\nmethods: [tinymethod]\ntasks: [tinytask]\n")
    assert main(["grid", str(grid), "--results", str(store), "--quiet"]) == 0
    assert main(["gc", "--results", str(store)]) == 0
    assert calls == [(store, False), (store, True)]
