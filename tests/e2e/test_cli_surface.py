"""What a user's shell sees of the project (issue 27): `make test` ends with pytest's counts and skip reasons, and
the console script `unibench` is the CLI of `python -m benchmark`."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _pytest_commands() -> list[list[str]]:
    """The pytest command lines of the Makefile's `test` recipe."""
    recipe = re.search(r"^test:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    return [shlex.split(line) for line in recipe.splitlines() if "pytest" in line]


def test_make_test_prints_the_counts_line_and_skip_reasons():
    addopts = shlex.split(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
                          ["addopts"])
    commands = _pytest_commands()
    assert len(commands) == 2
    for words in commands:
        quiet = sum(w.count("q") for w in addopts + words if re.fullmatch(r"-q+", w)) + \
            sum(w == "--quiet" for w in addopts + words)
        assert quiet <= 1, words          # -qq drops pytest's "N passed, M skipped" line
        assert any(re.fullmatch(r"-r\w*s\w*", w) for w in words), words   # each skip with its reason


def test_the_counts_line_survives_the_projects_options(tmp_path):
    """The same options on a one-test file: the summary names the skip's reason and the counts."""
    (tmp_path / "test_one.py").write_text("import pytest\n\ndef test_a():\n    pass\n\n"
                                          "def test_b():\n    pytest.skip('no browser here')\n")
    words = [w for w in _pytest_commands()[0][1:] if w not in ("tests",)]
    words = words[words.index("pytest") + 1:]
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    out = subprocess.run([sys.executable, "-m", "pytest", *shlex.split(addopts), *words, str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "SKIPPED [1]" in out.stdout and "no browser here" in out.stdout, out.stdout
    assert re.search(r"1 passed, 1 skipped", out.stdout.splitlines()[-1]), out.stdout


def test_the_unibench_console_script_is_the_cli():
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["unibench"]
    module, func = target.split(":")
    assert (module, func) == ("benchmark.__main__", "main")
    script = Path(sys.executable).parent / "unibench"     # installed by `pip install -e .` (make install)
    if script.exists():
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith("usage: unibench"), out.stderr
        bad = subprocess.run([str(script), "run", "--method", "nosuch", "--task", "ave"], capture_output=True,
                             text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
    out = subprocess.run([sys.executable, "-m", "benchmark", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m benchmark"), out.stderr


def test_run_takes_several_methods_and_prints_one_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "chance", "cca", "chance", "--task",
                          "ave", "--profile", "smoke", "--results", tmp_path / "s", "-q"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                           "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    assert "2 cells: cached 0 · ran 2" in out.stderr                       # a repeated spec is one cell
    assert out.stdout.count("ave · acc · mean ± 95% CI over seeds 0") == 1   # one table ...
    rows = [line.split("│")[1].strip() for line in out.stdout.splitlines() if line.count("│") > 3]
    assert rows == ["chance", "cca"], out.stdout                             # ... a row per method, as given
    assert "· seed 0" not in out.stdout                                      # no per-cell tables


def test_the_smoke_preset_is_the_default_one_at_a_seconds_budget():
    """Every family's smoke settings are its default settings (family values included) but for the epochs."""
    import yaml

    from benchmark import registry
    smoke = yaml.safe_load((ROOT / "methods" / "_pretrained.yaml").read_text())["scales"]["smoke"]
    checked = 0
    for name, entry in registry.entries("method").items():
        if "scale" not in entry.options or entry.hidden:
            continue
        settings = entry.load().settings
        default = settings({**entry.defaults(), "scale": "default"})
        fast = settings({**entry.defaults(), "scale": "smoke"})
        assert fast == {**default, "scale": "smoke", "epochs": smoke["epochs"]}, name
        assert fast["epochs"] < default["epochs"]
        checked += 1
    assert checked >= 6


def test_a_spec_that_names_its_scale_or_budget_keeps_it_on_the_smoke_profile():
    from benchmark.spec import at_smoke_scale
    assert at_smoke_scale("fccid+toc") == "fccid@scale=smoke+toc"
    assert at_smoke_scale("dcid@quantizer=rvq") == "dcid@quantizer=rvq,scale=smoke"
    assert at_smoke_scale("dcid@epochs=1") == "dcid@epochs=1"             # a budget chosen by hand
    assert at_smoke_scale("dcid@scale=paper") == "dcid@scale=paper"
    assert at_smoke_scale("chance") == "chance"                             # no presets


def test_run_on_the_smoke_profile_trains_the_smoke_preset_and_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "dcid", "chance", "--task", "ave",
                          "--profile", "smoke", "--results", tmp_path / "s", "-q", "--threads", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "dcid@scale=smoke" in out.stdout and "│ chance " in out.stdout       # presets only where there are any
    assert out.stdout.rstrip().splitlines()[-1].startswith("SMOKE: ") and "plumbing only" in out.stdout
    import json
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "s").glob("cells/ave/dcid*/*/result.json")]
    assert len(result["diagnostics"]["training"]["loss_history"]) == 2          # the smoke budget, not 32 epochs


def test_grid_on_the_smoke_profile_runs_the_smoke_preset_and_says_so(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmethods: [dcid, chance]\ntasks: [ave]\nseeds: [0]\n")
    out = subprocess.run([sys.executable, "-m", "benchmark", "grid", grid, "--profile", "smoke", "--results",
                          tmp_path / "s", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "s" / "cells" / "ave").iterdir()) == ["chance", "dcid@scale=smoke"]
    assert out.stdout.rstrip().splitlines()[-1].startswith("SMOKE: ")
