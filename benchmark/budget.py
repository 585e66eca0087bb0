"""Budget study: how many pretraining epochs a method needs before its numbers stop moving.

One training run per (method, seed) serves every budget: nothing in the trainer depends on the total epoch count
(no schedule), and a run resumes from the newest checkpoint with the same resume tag, which leaves `epochs` out.
So the chain trains to 2 epochs, saves that pretraining under the cache key of `method@epochs=2`, resumes to 4,
saves, ... — bit for bit the models fresh runs at each budget would give (tested), at the cost of the longest one.
The probes are ordinary cells (`method@epochs=B × task`), so they are cached, tabulated and reused like any other.

A method is *converged at budget B* when its probe score at B agrees with those at 2B and every larger probed
budget (within `tolerance` points, or within the seed CI of the paired difference) and it has *learned*: its
same-modality probe (A→A) is at least `LEARNED_FACTOR` × chance. Without that guard a flat curve on the floor
passes (a collapsed codebook scores chance at every budget; docs/INSTRUMENT.md has the case). The study reports
each method's smallest converged B and the smallest B at which every method of it is; the `scale=default`
preset of each method's card is the former (docs/INSTRUMENT.md says why a per-method budget is the fair one).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import executors, pretraining, runner
from . import spec as specs
from . import stats
from .contracts import MODALITY_ORDER, UserError
from .results import CellResult
from .store import Store

PROBE_TASK = "ave"
PROBE_DIRECTIONS = ("V->A", "A->V", "A->A", "V->V")
TOLERANCE = 1.0   # accuracy points
USAGE = "usage:"              # pseudo-direction of a point: % of the codebook a modality uses
LEARNED_FACTOR = 3.0          # the issue-14 bar for "has learned": same-modality accuracy >= 3x chance
LEARNED_DIRECTION = "A->A"    # same modality: a method that transfers nothing (SimMMDG V->A) can still have learned


def with_epochs(method: str, epochs: int) -> str:
    """`dcid@quantizer=rvq+toc` -> `dcid@quantizer=rvq,epochs=8+toc` (the budget goes on the base method)."""
    base, plus, refiners = method.partition("+")
    parsed = specs.parse_method(method)
    if "epochs" not in parsed.base.entry.options:
        raise UserError(f"method '{parsed.base.name}' has no 'epochs' option, so it has no training budget")
    if "epochs=" in base.partition("@")[2]:
        raise UserError(f"budget study of '{method}': leave 'epochs' out of the spec, the study sets it")
    base = base + ("," if "@" in base else "@") + f"epochs={int(epochs)}"
    return base + plus + refiners


def chain_dir(store: Store, method: str, corpus_fingerprint: str, seed: int) -> Path:
    """Checkpoints shared by every budget of one (method without epochs, corpus, seed)."""
    spec = specs.parse_method(method)
    ident = specs.stable_hash({"method": spec.pretrain_resolved(), "corpus": corpus_fingerprint, "seed": int(seed)})
    return store.root / "pretrain" / spec.base.name / f"chain-{ident}"


def _schedule_depends_on_epochs(spec: specs.MethodSpec) -> bool:
    """Whether a run of this spec is NOT a prefix of a longer one (its method says so from its settings)."""
    method = spec.base.entry.load()
    check = getattr(method, "schedule_depends_on_epochs", None)
    return bool(check and check(method.settings(spec.base.cfg)))


def run_chain(method: str, budgets: Sequence[int], seed: int, world, store: Store, ctx) -> list[dict]:
    """Pretrain `method` once up to max(budgets), caching the pretraining at every budget on the way."""
    corpus = world.corpus()
    shared = chain_dir(store, method, corpus.fingerprint, seed) / "checkpoints"
    rows = []
    for budget in sorted(set(budgets)):
        spec = specs.parse_method(with_epochs(method, budget))
        ctx.notes = {}
        checkpoints = shared
        if _schedule_depends_on_epochs(spec):     # e.g. SRCID's warm start at a share of the budget
            checkpoints = chain_dir(store, with_epochs(method, budget), corpus.fingerprint, seed) / "checkpoints"
        _, key = pretraining.get_pretrained(runner.Cell(spec, None, seed), world, store, ctx, checkpoints=checkpoints)
        rows.append({"method": method, "epochs": budget, "seed": seed, "key": key,
                     "status": "trained" if "pretrain_s" in ctx.notes else "cached"})
    return rows


def chain_job(payload: dict, emit=None) -> list[dict]:
    """One chain in a pool worker, rebuilt from plain values."""
    executors.worker_threads(payload["threads"])
    ctx = runner.make_context(payload["device"], events=emit)
    return run_chain(payload["method"], payload["budgets"], payload["seed"], executors.open_world(payload["world"]),
                     Store(payload["store"]), ctx)


Budgets = Sequence[int] | Mapping[str, Sequence[int]]


def budgets_of(methods: Sequence[str], budgets: Budgets) -> dict[str, list[int]]:
    """Each method's sorted budgets: one list for all, or per method (a fast method need not train to the slow
    ones' largest budget to prove its own)."""
    if isinstance(budgets, Mapping):
        return {m: sorted(set(budgets[m])) for m in methods}
    return {m: sorted(set(budgets)) for m in methods}


def chain_pending(methods: Sequence[str], budgets: Budgets, seeds: Sequence[int], world,
                  store: Store) -> dict[str, dict]:
    """The pretrainings the chains will train, each with the epochs it adds to the previous budget (what the
    ETA counts)."""
    out = {}
    for method, steps in budgets_of(methods, budgets).items():
        for seed in seeds:
            for before, budget in zip([0] + steps, steps):
                cell = runner.Cell(specs.parse_method(with_epochs(method, budget)), None, seed)
                for key, info in pretraining.pending([cell], world, store).items():
                    out[key] = {**info, "epochs": budget - before}
    return out


def run_chains(methods: Sequence[str], budgets: Budgets, seeds: Sequence[int], world, store: Store,
               options: runner.Options, workers: int, ui, device: str) -> list[dict]:
    """Every (method, seed) chain, in `workers` processes of the executors' pool (1 = in this process)."""
    jobs = [(m, s) for m in methods for s in seeds]
    plan = budgets_of(methods, budgets)
    ui.expect([], chain_pending(methods, plan, seeds, world, store), workers)
    rows: list[dict] = []
    try:
        if workers <= 1:
            runner.set_threads(options.threads or runner.default_threads())
            ctx = runner.make_context(device, progress=ui.inner, log=ui.log,
                                      events=lambda kind, **info: ui.event(0, kind, info))
            for method, seed in jobs:
                rows += run_chain(method, plan[method], seed, world, store, ctx)
                ui.advance(f"{method} seed {seed}")
            return rows
        threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
        payloads = [{"method": m, "budgets": plan[m], "seed": s, "threads": threads, "device": device,
                     "store": str(Path(store.root).resolve()), "world": options.world.payload()} for m, s in jobs]
        with executors.Pool(workers, events=ui.event) as pool:
            for index, status, value in pool.map(chain_job, payloads):
                method, seed = jobs[index]
                if status == "user":
                    raise UserError(value)
                if status != "ok":    # a dead or failing chain costs its own budgets; the probes say which
                    ui.log(f"[red]failed[/] budget chain {method} seed {seed}: {value}")
                    rows.append({"method": method, "seed": seed, "status": "failed", "error": value})
                else:
                    rows += value
                ui.advance(f"{method} seed {seed}")
    except KeyboardInterrupt:
        finished = len({(row["method"], row["seed"]) for row in rows})
        raise executors.Interrupted(f"interrupted: {finished} of {len(jobs)} budget chains finished; every budget "
                                    f"trained so far is kept in the store (rerun to resume)") from None
    return rows


# --------------------------------------------------------------------------- the verdict
@dataclass
class Point:
    method: str
    epochs: int
    direction: str
    values: dict[int, float]          # seed -> score

    @property
    def summary(self) -> stats.Summary:
        return stats.summarize([self.values[s] for s in sorted(self.values)])


def _probed(methods: Sequence[str], budgets: Budgets) -> dict[str, tuple[str, int]]:
    """{canonical spec of a probe's pretraining: (method, budget)}: how a probe cell is told apart."""
    return {specs.parse_method(with_epochs(m, b)).canonical(): (m, b)
            for m, bs in budgets_of(methods, budgets).items() for b in bs}


def collect(results: Iterable[CellResult], methods: Sequence[str], budgets: Budgets, metric: str = "acc",
            directions: Sequence[str] = PROBE_DIRECTIONS) -> dict[tuple[str, int, str], Point]:
    """Probe scores per (method, budget, direction) from cell results, and the pretraining's codebook usage per
    modality (share of codes used) under direction `usage:<modality>` — the learning curves' early plateau is a
    codebook that video and text collapse onto a handful of codes, and the table shows it."""
    wanted = _probed(methods, budgets)
    points: dict[tuple[str, int, str], Point] = {}
    for r in results:
        hit = wanted.get(r.method)
        if hit is None or r.task_name != PROBE_TASK:
            continue
        for d in directions:
            value = r.score(d, metric)
            if value is not None:
                points.setdefault((*hit, d), Point(hit[0], hit[1], d, {})).values[r.seed] = value
        for modality, share in (r.diagnostics.get("usage_per_modality") or {}).items():
            d = USAGE + modality
            points.setdefault((*hit, d), Point(hit[0], hit[1], d, {})).values[r.seed] = 100.0 * float(share)
    return points


def probe_keys(results: Iterable[CellResult], methods: Sequence[str], budgets: Budgets) -> dict[tuple[str, int], dict[int, str]]:
    """The pretraining key behind each (method, budget, seed) probe: what a recorded study vouches for."""
    wanted = _probed(methods, budgets)
    keys: dict[tuple[str, int], dict[int, str]] = {}
    for r in results:
        hit = wanted.get(r.method)
        if hit is not None and r.task_name == PROBE_TASK and r.pretrain_key:
            keys.setdefault(hit, {})[r.seed] = r.pretrain_key
    return keys


RECORD = Path("tables") / "budget.json"     # under a results folder: where `budget` writes its study


def recorded_studies(results_dir: Path) -> dict[str, bool]:
    """Every study committed under `results_dir` (`tables/budget*.json`: the main one and any later study of a
    few methods written with `--name`, e.g. one that adds a larger budget), merged; where two disagree on a key,
    not converged wins (a larger probed budget can only take a verdict back)."""
    merged: dict[str, bool] = {}
    for path in study_records(results_dir):
        for key, verdict in recorded_verdicts(path).items():
            merged[key] = merged.get(key, True) and verdict
    return merged


HEAD_RECORD = Path("tables") / "head_budget.json"    # the head study (tests/benchmarks/head_budget.py)


def unsettled_heads(results_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """{(task, row): {"heads": source heads, "data": feature-file fingerprints}} for the heads the committed head
    study (`tables/head_budget.json`) found still moving at its task's head budget: the rows it exempted, judged
    per head with `settled` on the recorded val scores, the rule the study applied. A cell of that row on that
    data read from that head is a lower bound. A missing or unreadable record says nothing ({}); the fingerprints
    keep its verdict to the world it studied."""
    import json
    try:
        tasks = json.loads((Path(results_dir) / HEAD_RECORD).read_text()).get("tasks") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for task, study in tasks.items():
        budget = study.get("scale")
        for row in study.get("exempt") or []:
            points = {(row, int(scale), head): Point(row, int(scale), head, {int(k): float(v) for k, v in seeds.items()})
                      for scale, entry in (study.get("rows") or {}).get(row, {}).items()
                      for head, seeds in (entry.get("val") or {}).items()}
            heads = sorted({head for (_, _, head) in points})
            moving = [h for h in heads if budget is None or not settled(points, row, budget, h)]
            if moving:
                out[(task, row)] = {"heads": moving, "data": sorted(study.get("data_fingerprints") or [])}
    return out


def study_records(results_dir: Path) -> list[Path]:
    """Every study committed under `results_dir`: `tables/budget.json` and those written with `--name`."""
    return sorted((Path(results_dir) / RECORD.parent).glob(f"{RECORD.stem}*{RECORD.suffix}"))


def record_rows(path: Path) -> list[dict]:
    """A committed study's rows; a missing or unreadable file has none (it proves nothing)."""
    import json
    try:
        rows = json.loads(Path(path).read_text()).get("rows") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [row for row in rows if isinstance(row, dict)]


def preset_epochs(method: str) -> int | None:
    """The epochs `method` trains with at its default scale (its card's preset, a family override included)."""
    return (specs.pretrain_settings(specs.parse_method(method)) or {}).get("epochs")


def proofs(results_dir: Path, methods: Sequence[str] | None = None,
           keys: Mapping[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """Per method, the budget its card trains and what the committed studies (`tables/budget*.json`) say of it:
    AVE V→A / A→A at that budget and at twice it, converged or not (not converged wins where studies disagree;
    None where none probed twice the budget) and which study decides. A card whose preset moved off every
    proven budget shows up here as unproven. `methods` defaults to every method some study probed; `keys`
    (method -> the pretraining keys its cells in the store have) keeps only the study rows that judged those very
    pretrainings (another world's or setting's study proves nothing here)."""
    studies = [(path.stem, {(r.get("method"), r.get("epochs")): r for r in record_rows(path)})
               for path in study_records(results_dir)]
    if methods is None:
        methods = list(dict.fromkeys(m for _, rows in studies for m, _ in rows))
    out = []
    for m in methods:
        epochs = preset_epochs(m)
        row: dict[str, Any] = {"method": m, "epochs": epochs, "converged": None, "study": None,
                               **{f"{d} {w}": None for d in ("V->A", "A->A") for w in ("at", "at 2x")}}
        for name, rows in studies:
            at, twice = rows.get((m, epochs)), rows.get((m, 2 * epochs if epochs else None))
            if at is None or at.get("converged") is None:
                continue
            if keys and keys.get(m) and not keys[m] & set((at.get("pretrain_keys") or {}).values()):
                continue
            if row["study"] is None or not at["converged"]:
                row.update({f"{d} {where}": (r or {}).get(f"{d} mean") for d in ("V->A", "A->A")
                            for where, r in (("at", at), ("at 2x", twice))})
            row["converged"] = bool(at["converged"]) and row["converged"] is not False
            row["study"] = name if row["study"] is None else f"{row['study']}, {name}"
        out.append(row)
    return out


def store_verdicts(results: Iterable[CellResult], results_dir: Path) -> Callable[[CellResult], bool | None]:
    """`study_verdicts` of `results` backed by every study committed under `results_dir`: what † reads."""
    return study_verdicts(results, recorded=recorded_studies(results_dir))


def recorded_verdicts(path: Path) -> dict[str, bool]:
    """{pretraining key: converged} from a study's committed `budget.json` (its rows' `pretrain_keys`): the proof
    a store without the study's probes still has, so a fresh `make bench` marks † as the study found. A missing
    or unreadable file is no proof ({}); keys are exact (method settings, corpus and seed), so a study of another
    world or setting vouches for nothing here."""
    return {key: bool(row["converged"]) for row in record_rows(path) if row.get("converged") is not None
            for key in (row.get("pretrain_keys") or {}).values()}


def _family(result: CellResult) -> tuple[str, int] | None:
    """(the pretraining behind a cell apart from its budget, the epochs it trained): its base spec without
    inference-only options and `epochs`, on its world (every task's cells share the world's corpus), and the
    epochs its training record holds (else the spec's). Read off the cell alone: no method class is loaded, so
    tables stay free of torch. None for a method without a budget."""
    spec = specs.parse_method(result.method)
    entry = spec.base.entry
    if "epochs" not in entry.options:
        return None
    epochs = ((result.diagnostics or {}).get("training") or {}).get("epochs") or spec.base.cfg.get("epochs")
    if not isinstance(epochs, int):
        return None
    base = specs.MethodSpec(specs.Component(entry, {**spec.base.cfg, "epochs": entry.defaults().get("epochs")}))
    return f"{base.pretrain_canonical()} on {result.world or result.data_fingerprint}", epochs


def study_verdicts(results: Iterable[CellResult], directions: Sequence[str] = ("V->A", "A->A"),
                   recorded: Mapping[str, bool] | None = None) -> Callable[[CellResult], bool | None]:
    """What tables mark: whether the budget study held in `results` shows the pretraining behind a cell converged
    at its budget (the study's rule, `converged`, on every direction; chance read off the probe cells), else
    what a `recorded` study (`recorded_verdicts`) says of the cell's pretraining key, None where neither covers
    it (no probe at twice its budget). The study is the stronger test: a loss that still falls slowly
    (contrastive and supervised objectives keep fitting the corpus) passes it, and a plateau before learning
    fails it."""
    points: dict[tuple[str, int, str], Point] = {}
    classes: dict[str, int] = {}

    def family(r: CellResult) -> tuple[str, int] | None:
        try:
            return _family(r)
        except UserError:          # a plugin method that is not installed here: it cannot be judged
            return None

    for r in results:
        if r.task_name != PROBE_TASK or r.refiners:
            continue
        hit = family(r)
        if hit is None:
            continue
        for d in directions:
            value = r.score(d)
            if value is not None:
                points.setdefault((*hit, d), Point(hit[0], hit[1], d, {})).values[r.seed] = value
            n = (r.test_sizes.get(d) or {}).get("classes")
            if n:
                classes[hit[0]] = int(n)

    def verdict(result: CellResult) -> bool | None:
        hit = family(result)
        if hit is not None:
            chance = 100.0 / classes[hit[0]] if hit[0] in classes else None
            flags = [converged(points, hit[0], hit[1], d, chance=chance) for d in directions]
            if all(f is not None for f in flags):
                return all(flags)
        return (recorded or {}).get(result.pretrain_key or "")
    return verdict


def _close(a: Point, b: Point, tolerance: float) -> bool | None:
    """Whether two budgets' scores agree: mean paired difference within `tolerance`, or (>= 3 seeds) within the
    95 % CI of the paired difference."""
    seeds = sorted(set(a.values) & set(b.values))
    diffs = [b.values[s] - a.values[s] for s in seeds]
    if not diffs:
        return None
    gap = abs(stats.mean(diffs))
    ci = stats.ci_half_width(diffs) if len(diffs) > 2 else math.nan   # a 2-seed CI is too wide to mean "same"
    return gap <= tolerance or (not math.isnan(ci) and gap <= ci)


def learned(points, method: str, budget: int, chance: float | None) -> bool | None:
    """Whether the same-modality probe at `budget` is at least LEARNED_FACTOR × chance (None: not probed or no
    chance given)."""
    here = points.get((method, budget, LEARNED_DIRECTION))
    if here is None or chance is None:
        return None
    return here.summary.mean >= LEARNED_FACTOR * chance


def converged(points, method: str, budget: int, direction: str, tolerance: float = TOLERANCE,
              chance: float | None = None) -> bool | None:
    """Whether the score at `budget` agrees with the score at 2×budget *and at every larger probed budget*, and
    (given `chance`) the method has learned by then — a plateau on the floor is not convergence; None when
    2×budget was not probed."""
    here = points.get((method, budget, direction))
    later = sorted(b for (m, b, d) in points if m == method and d == direction and b >= 2 * budget)
    if here is None or (method, 2 * budget, direction) not in points:
        return None
    verdicts = [_close(here, points[(method, b, direction)], tolerance) for b in later]
    if any(v is None for v in verdicts):
        return None
    return all(verdicts) and learned(points, method, budget, chance) is not False


def settled(points, method: str, budget: int, direction: str) -> bool:
    """Whether `method` on `direction` sits on its plateau at `budget`: converged at some probed budget <= it (a
    score converged at s agrees with every larger probed one). The head study's rule, per head: a row has settled
    when every one of its heads has."""
    return any(converged(points, method, s, direction) is True
               for (m, s, d) in points if m == method and d == direction and s <= budget)


def choose_budget(points, methods: Sequence[str], budgets: Budgets,
                  directions: Sequence[str] = ("V->A", "A->A"), chance: float | None = None) -> int | None:
    """Smallest probed budget at which every method is converged on every direction (None if there is none)."""
    every = sorted({b for bs in budgets_of(methods, budgets).values() for b in bs})
    for budget in every:
        verdicts = [converged(points, m, budget, d, chance=chance) for m in methods for d in directions]
        if verdicts and all(v is True for v in verdicts):
            return budget
    return None


def choose_budgets(points, methods: Sequence[str], budgets: Budgets,
                   directions: Sequence[str] = ("V->A", "A->A"), chance: float | None = None) -> dict[str, int | None]:
    """Per method, the smallest probed budget at which it is converged on every direction (None: none is)."""
    return {m: choose_budget(points, [m], {m: bs}, directions, chance)
            for m, bs in budgets_of(methods, budgets).items()}


def table_rows(points, methods: Sequence[str], budgets: Budgets,
               directions: Sequence[str] = ("V->A", "A->A"), chance: float | None = None) -> list[dict[str, Any]]:
    """One row per (method, budget): mean ± CI per direction and the convergence verdict."""
    rows = []
    for m, bs in budgets_of(methods, budgets).items():
        for b in bs:
            row: dict[str, Any] = {"method": m, "epochs": b}
            for d in directions:
                p = points.get((m, b, d))
                s = p.summary if p is not None else None
                row[f"{d} mean"] = None if s is None else round(s.mean, 2)
                row[f"{d} ci95"] = None if s is None or not s.ci_defined else round(s.half_width, 2)
                row[f"{d} n"] = 0 if s is None else s.n
            for modality in MODALITY_ORDER:
                p = points.get((m, b, USAGE + modality))
                row[f"codes used {modality} %"] = None if p is None else round(p.summary.mean, 1)
            flags = [converged(points, m, b, d, chance=chance) for d in directions]
            row["learned"] = learned(points, m, b, chance)
            row["converged"] = None if any(f is None for f in flags) else all(flags)
            rows.append(row)
    return rows
