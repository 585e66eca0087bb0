"""The seven claims of docs/PAPERS.md, each naming the specs it compares (decision rules: `benchmark/claims.py`).

Quantities (per seed s; each task's `main_metric`, percent):
- CMG(m, s)  = mean of the 8 Table 1 cells: {ave, avvp, ave_avvp, ucf_vgg} × {V->A, A->V}.
- MM(m, s)   = mean of the 6 same-modality cells {ave, avvp, ucf_vgg} × {V->V, A->A} (SRCID Table I's m->m rows,
               which exclude AVE->AVVP).
- LOC(m, s)  = mean of {avvp, ave_avvp} × {V->A, A->V};  CLS(m, s) = mean of {ave, ucf_vgg} × {V->A, A->V}.
- toc_recon cells (method vqvae): per mask ratio (= direction, e.g. `mask87.5`), `mse_random` (mean MSE over
  the random masks) and `mse_toc` (MSE with TOC's mask).

Claims (cells = methods as specs; every comparison uses CMG unless stated):
1. FCCID > DCID > CMCM > TURN ≈ CODIS: links fccid > dcid, dcid > cmcm, cmcm > turn, turn ≈ codis.
2. +TOC ≥ base for every discrete method: m+toc ≥ m for m ∈ {codis, turn, cmcm, dcid, fccid}.
3. TOC sim+var ≥ either alone: fccid+toc ≥ fccid+toc@criterion=sim, and ≥ fccid+toc@criterion=var.
4. RVQ/FSQ beat VQ on m->m but not cross-modal: for q ∈ the FSQ / RVQ-2,3,4 rows of SRCID Table I's grid:
   MM(q) > MM(vq)  and  CMG(vq) ≥ CMG(q), vq = its VQ row (at the grid's 16-epoch budget).
5. SRCID's layer 2 helps localization more than classification: with gain_X = X(srcid) − X(srcid@only1=true):
   gain_LOC > 0 (LOC(srcid) > LOC(srcid@only1=true)) and gain_LOC > gain_CLS.
6. A codebook of ~400 is best among the sizes tried: CMG(400-code row) ≥ CMG(N-code row) for every other size
   row of Table 7's grid (at the grid's 16-epoch budget).
7. TOC masks beat random masks for VQ-VAE reconstruction at every ratio: for every mask ratio stored,
   mse_random > mse_toc (lower MSE is better); no ratio stored = inconclusive.

The specs of claims 4 and 6 are written out here, not read from the grids' row order; a test checks that they are
rows of those grids, so a grid edit that changes them fails it.
"""
from __future__ import annotations

from typing import Sequence

from .claims import Claim, Ctx, compare, make_claim
from .results import CellResult
from .tables.index import Index, build_index
from .tables.names import canonical_method, canonical_task

_PAIR = ("V->A", "A->V")
CMG = [(t, (d,), None) for t in ("ave", "avvp", "ave_avvp", "ucf_vgg") for d in _PAIR]
MM = [(t, (d,), None) for t in ("ave", "avvp", "ucf_vgg") for d in ("V->V", "A->A")]
LOC = [(t, (d,), None) for t in ("avvp", "ave_avvp") for d in _PAIR]
CLS = [(t, (d,), None) for t in ("ave", "ucf_vgg") for d in _PAIR]
TOC_BASES = ("codis", "turn", "cmcm", "dcid", "fccid")
# claim 4: SRCID Table I (grid srcid_t1), the VQ row and the other quantizers, at the grid's budget
QUANTIZER_VQ = "dcid@epochs=16"
QUANTIZERS = {"DCID (FSQ)": "dcid@epochs=16,quantizer=fsq",
              "DCID (RVQ-2)": "dcid@epochs=16,levels=2,quantizer=rvq",
              "DCID (RVQ-3)": "dcid@epochs=16,levels=3,quantizer=rvq",
              "DCID (RVQ-4)": "dcid@epochs=16,levels=4,quantizer=rvq"}
# claim 6: FCCID Table 7 (grid t7), the 400-code row against the other sizes, at the grid's budget
BEST_SIZE, BEST_SIZE_SPEC = 400, "fccid@epochs=16"
SIZES = {n: f"fccid@codebook_size={n},epochs=16" for n in (256, 300, 512, 800, 1024)}
RECON_METHOD, RECON_TASK, RANDOM_MSE, TOC_MSE = "vqvae", "toc_recon", "mse_random", "mse_toc"


def claim1(ctx: Ctx) -> Claim:
    order = ["fccid", "dcid", "cmcm", "turn", "codis"]
    v = {m: ctx.q(m, CMG) for m in order}
    links = [compare(a, ">", b, "CMG", v[a], v[b]) for a, b in zip(order[:3], order[1:4])]
    links.append(compare("turn", "≈", "codis", "CMG", v["turn"], v["codis"]))
    return make_claim(1, "FCCID > DCID > CMCM > TURN ≈ CODIS on the Table 1 average",
                      "CMG of fccid, dcid, cmcm, turn, codis (8 Table 1 cells each)", ctx, links)


def claim2(ctx: Ctx) -> Claim:
    links = [compare(f"{m}+toc", "≥", m, "CMG", ctx.q(f"{m}+toc", CMG), ctx.q(m, CMG)) for m in TOC_BASES]
    return make_claim(2, "+TOC ≥ base for every discrete method", "CMG of m and m+toc, m ∈ "
                      + ", ".join(TOC_BASES), ctx, links)


def claim3(ctx: Ctx) -> Claim:
    both = ctx.q("fccid+toc", CMG)
    links = [compare("fccid+toc", "≥", f"fccid+toc@criterion={c}", "CMG", both,
                     ctx.q(f"fccid+toc@criterion={c}", CMG)) for c in ("sim", "var")]
    return make_claim(3, "TOC sim+var ≥ either alone", "CMG of fccid+toc (criterion both), "
                      "fccid+toc@criterion=sim, fccid+toc@criterion=var (Table 6)", ctx, links)


def claim4(ctx: Ctx) -> Claim:
    vq, quantizers = QUANTIZER_VQ, QUANTIZERS
    vq_mm, vq_cmg = ctx.q(vq, MM), ctx.q(vq, CMG)
    links = []
    for spec in quantizers.values():
        links.append(compare(spec, ">", vq, "MM (m->m)", ctx.q(spec, MM), vq_mm))
        links.append(compare(vq, "≥", spec, "CMG (cross-modal)", vq_cmg, ctx.q(spec, CMG)))
    return make_claim(4, "RVQ/FSQ beat VQ on m→m but not cross-modal", f"MM and CMG of {vq} (VQ) and "
                      + ", ".join(quantizers.values()) + " (SRCID Table I)", ctx, links)


def claim5(ctx: Ctx) -> Claim:
    full_loc, one_loc = ctx.q("srcid", LOC), ctx.q("srcid@only1=true", LOC)
    full_cls, one_cls = ctx.q("srcid", CLS), ctx.q("srcid@only1=true", CLS)
    gain_loc = {s: full_loc[s] - one_loc[s] for s in set(full_loc) & set(one_loc)}
    gain_cls = {s: full_cls[s] - one_cls[s] for s in set(full_cls) & set(one_cls)}
    links = [compare("srcid", ">", "srcid@only1=true", "LOC", full_loc, one_loc),
             compare("gain_LOC", ">", "gain_CLS", "layer-2 gain (srcid − srcid@only1=true)", gain_loc, gain_cls)]
    return make_claim(5, "SRCID's layer 2 helps localization (AVVP, AVE→AVVP) more than classification",
                      "LOC = avvp, ave_avvp; CLS = ave, ucf_vgg; V->A and A->V; srcid vs srcid@only1=true "
                      "(SRCID Table II)", ctx, links)


def claim6(ctx: Ctx) -> Claim:
    base, others = BEST_SIZE_SPEC, SIZES
    best = ctx.q(base, CMG)
    links = [compare(f"{base} ({BEST_SIZE})", "≥", spec, "CMG", best, ctx.q(spec, CMG)) for spec in others.values()]
    return make_claim(6, "A codebook of ~400 is best among the sizes tried", f"CMG of {base} ({BEST_SIZE} codes) "
                      f"vs {', '.join(others.values())} (Table 7)", ctx, links)


def claim7(ctx: Ctx) -> Claim:
    method, task = canonical_method(RECON_METHOD), canonical_task(RECON_TASK)
    ratios = sorted({d for (m, t, _), r in ctx.index.cells.items() if m == method and t == task
                     for d, v in r.metrics.items() if RANDOM_MSE in v and TOC_MSE in v})
    links = [compare("random masks", ">", "TOC mask", f"MSE at {d}",
                     ctx.q(RECON_METHOD, [(RECON_TASK, (d,), RANDOM_MSE)]),
                     ctx.q(RECON_METHOD, [(RECON_TASK, (d,), TOC_MSE)])) for d in ratios]
    note = ""
    if not ratios:
        note = f"no {RECON_TASK} cell of {RECON_METHOD} reports both {RANDOM_MSE} and {TOC_MSE}"
        for s in sorted({s for (_, _, s) in ctx.index.cells}) or [0]:
            present = ctx.index.get(method, task, s) is not None
            ctx.missing.append({"method": method, "task": task, "seed": s, "reason": (
                f"no direction with both {RANDOM_MSE} and {TOC_MSE}" if present else "no result")})
    return make_claim(7, "TOC masks beat random masks for VQ-VAE reconstruction at every ratio",
                      f"{RECON_METHOD} × {RECON_TASK}: {RANDOM_MSE} vs {TOC_MSE} per mask ratio (Table 3)", ctx,
                      links, note)


CLAIMS = (claim1, claim2, claim3, claim4, claim5, claim6, claim7)


def wanted_cells() -> set[tuple[str, str]]:
    """(method, task) pairs the claims read, to pick the world."""
    methods = ["fccid", "dcid", "cmcm", "turn", "codis", *[f"{m}+toc" for m in TOC_BASES],
               "fccid+toc@criterion=sim", "fccid+toc@criterion=var", QUANTIZER_VQ, *QUANTIZERS.values(), "srcid",
               "srcid@only1=true", BEST_SIZE_SPEC, *SIZES.values()]
    tasks = ["ave", "avvp", "ave_avvp", "ucf_vgg"]
    out = {(canonical_method(m), canonical_task(t)) for m in methods for t in tasks}
    return out | {(canonical_method(RECON_METHOD), canonical_task(RECON_TASK))}


def evaluate(results: Sequence[CellResult | dict], world: str | None = None) -> tuple[list[Claim], Index]:
    index = build_index(results, world, wanted_cells())
    ctx = Ctx(index)
    return [c(ctx) for c in CLAIMS], index


