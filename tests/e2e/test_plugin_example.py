"""The example plugin (examples/linear_vq_plugin, issue 17): a method outside the package runs through
`--include-path`, `$UNIBENCH_INCLUDE_PATH` and an installed `unibench.methods` entry point, no package file edited.

"Installed" is what pip leaves behind, made by hand so the test needs no network or build: a `*.dist-info`
folder with the plugin's `entry_points.txt` on the path, where `importlib.metadata` finds it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import registry

ROOT = Path(__file__).resolve().parent.parent.parent
PLUGIN = ROOT / "examples" / "linear_vq_plugin"
CARDS = PLUGIN / "unibench_linear_vq"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("plugin_store")     # one smoke world for both runs


def run(*args, env=None):
    out = subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def results(store: Path, method: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(store.glob(f"cells/*/{method}/*/result.json"))]


def test_example_plugin_runs_via_include_path(store):
    run("run", "--method", "linear_vq@epochs=1", "--task", "ave", "--profile", "smoke", "--seeds", "0",
        "--results", store, "-q", "--include-path", CARDS)
    [cell] = results(store, "linear_vq@epochs=1")
    assert cell["pretrain_key"] and set(cell["metrics"]) == {"V->A", "A->V", "V->V", "A->A"}


def test_example_plugin_runs_via_an_installed_entry_point(store, tmp_path):
    site = tmp_path / "site"
    info = site / "unibench_linear_vq-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unibench-linear-vq\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[unibench.methods]\nlinear_vq = unibench_linear_vq\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(PLUGIN), str(ROOT)]), "UNIBENCH_INCLUDE_PATH": ""}
    listed = run("ls", "methods", env={**env, "COLUMNS": "200"})
    assert "linear_vq" in listed.stdout
    run("run", "--method", "linear_vq@epochs=1,w_align=0.5", "--task", "ave", "--profile", "smoke", "--seeds", "0",
        "--results", store, "-q", env=env)
    [cell] = results(store, "linear_vq@epochs=1,w_align=0.5")
    assert set(cell["metrics"]) == {"V->A", "A->V", "V->V", "A->A"}


def test_the_environment_variable_adds_the_cards(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv(registry.INCLUDE_ENV, str(CARDS))
    registry.entries.cache_clear()
    try:
        entry = registry.get("method", "linear_vq")
        assert entry.options["dtype"].default == "float32"        # from the _codebook -> _pretrained bases
        assert type(entry.load()).__name__ == "LinearVQ"
    finally:
        monkeypatch.delenv(registry.INCLUDE_ENV)
        registry.entries.cache_clear()
        sys.modules.pop("unibench_linear_vq.linear_vq", None)
        sys.modules.pop("unibench_linear_vq", None)
    assert "linear_vq" not in registry.entries("method")
