"""`claims` at 80 columns: every comparison's specs printed whole (RVQ-2/3/4 told apart), no line cut short."""
from __future__ import annotations

from rich.console import Console

from benchmark import claims, claims_narrow, paper_claims
from test_claims import cells


def test_claims_at_80_columns_print_every_spec_whole():
    stored = cells(paper_claims.QUANTIZER_VQ, 60, mm=70, seed_noise=1) + sum(
        (cells(s, 57 + i, mm=80, seed_noise=5 + i) for i, s in enumerate(paper_claims.QUANTIZERS.values())), [])
    found, index = paper_claims.evaluate(stored)
    console = Console(width=80, record=True, color_system=None)
    console.print(claims_narrow.to_rich(found, index))
    text = console.export_text()
    lines = text.splitlines()
    assert "…" not in text and max(map(len, lines)) <= 80
    rvq = [c for c in found if c.number == 4][0]
    for link in rvq.links:
        a, b = claims.link_row(link)[0].split(f" {link.rel} ")
        assert f"· {a} {link.rel} {b}" in text                       # the whole comparison on one line
    assert len({ln for ln in lines if "levels=" in ln and "quantizer=rvq" in ln}) == 6   # 3 RVQ depths × 2 links
    for c in found:
        assert f"{c.number}. " in text and c.verdict in text


def test_the_claims_command_fits_80_columns(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    store = tmp_path / "store"
    for r in cells(paper_claims.QUANTIZER_VQ, 60, mm=70, seed_noise=1) + sum(
            (cells(s, 57 + i, mm=80, seed_noise=5 + i) for i, s in enumerate(paper_claims.QUANTIZERS.values())), []):
        d = store / "cells" / r["task"] / r["method"] / f"k{r['seed']}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r))
    out = subprocess.run([sys.executable, "-m", "benchmark", "claims", "--results", str(store)],
                         cwd=Path(__file__).resolve().parent.parent.parent, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = [ln.rstrip() for ln in out.stdout.splitlines()]
    assert max(map(len, out.stdout.splitlines())) <= 80 and "…" not in out.stdout
    assert "  · dcid@epochs=16 ≥ dcid@epochs=16,levels=3,quantizer=rvq" in lines    # whole, one line
    assert any(ln.startswith("  a ≈ b: holds if") for ln in lines)                   # the rules wrap indented


def test_claims_of_a_smoke_world_carry_the_banner(tmp_path, capsys):
    import json

    from benchmark.__main__ import main as cli_main
    from benchmark.tables import SMOKE_BANNER
    for world, store in (("smoke-s0", tmp_path / "smoke"), ("default-s0", tmp_path / "default")):
        for r in cells("fccid", 60, seed_noise=1, world=world) + cells("dcid", 55, seed_noise=2, world=world):
            d = store / "cells" / r["task"] / r["method"] / f"k{r['seed']}"
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps(r))
    assert cli_main(["claims", "--results", str(tmp_path / "smoke")]) == 0
    assert capsys.readouterr().out.startswith("SMOKE: ")
    assert cli_main(["claims", "--results", str(tmp_path / "default")]) == 0
    assert SMOKE_BANNER[:20] not in capsys.readouterr().out
