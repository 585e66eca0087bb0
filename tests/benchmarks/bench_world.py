"""World benchmark (issue 3): is the synthetic world discriminative, how fast is it made, does it stream?

    python tests/benchmarks/bench_world.py                     # default world: generation time + probes
    python tests/benchmarks/bench_world.py --sweep 0 1 2       # probes at several scene sigmas
    python tests/benchmarks/bench_world.py --paper-stream 40000 --out /big/disk   # write + stream paper corpus

Under pytest (`make perf`) the same measurements run as pytest-benchmark cases (marked slow).

Probes (no learning beyond a linear head): features pooled over seconds (max ‖ mean), standardised, then
scikit-learn LogisticRegression trained on the AVE-like train split of one modality and tested on the test split
of the same or the other modality.
- raw: the features as stored (same-modality only: widths differ across modalities);
- pca: per-modality PCA (fit on pretraining clips, whitened) to a common width k: an unlearned common space;
- cca: CCA fit on per-second audio/video pairs of the pretraining corpus, top k directions: a linear stand-in
  for "a reasonable aligned method". With k = 8 it has only room for the strongest shared factor.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:   # runnable as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from tasks.data import open_world, synthesize  # noqa: E402

SHORT = {"audio": "A", "video": "V"}


# --------------------------------------------------------------------------- probes
def pooled(x: np.ndarray) -> np.ndarray:
    """[N, T, ...] -> [N, 2D]: max and mean over seconds of the flattened per-second features."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return np.concatenate([x.max(1), x.mean(1)], 1)


def probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(train_x)
    head = LogisticRegression(max_iter=300, C=0.5).fit(scaler.transform(train_x), train_y)
    return float(100 * (head.predict(scaler.transform(test_x)) == test_y).mean())


def cca(a: np.ndarray, b: np.ndarray, k: int, reg: float = 1e-3):
    """Top-k canonical directions of paired rows a [M, Da], b [M, Db] -> (Wa [Da,k], Wb [Db,k], correlations [k])."""
    a, b = a - a.mean(0), b - b.mean(0)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c + reg * np.trace(c) / len(c) * np.eye(len(c)))
        return (v / np.sqrt(w)) @ v.T
    wa, wb = inv_sqrt(a.T @ a / len(a)), inv_sqrt(b.T @ b / len(b))
    u, s, vt = np.linalg.svd(wa @ (a.T @ b / len(a)) @ wb)
    return wa @ u[:, :k], wb @ vt.T[:, :k], s[:k]


def world_probe(root: Path, ks=(8, 16), pca_width: int = 64, fit_clips: int = 3000) -> dict:
    """Accuracies (%) on the AVE-like file; PCA/CCA are fit on up to `fit_clips` pretraining clips."""
    from sklearn.decomposition import PCA
    world = open_world(root)
    pre, ave = world.open("pretrain"), world.open("ave")
    y, train, test = ave.labels("clip"), ave.split("train"), ave.split("test")
    fit_idx = np.arange(min(fit_clips, len(world.corpus())))
    per_second = {m: pre.read(m, fit_idx) for m in ("audio", "video")}
    per_second = {m: x.reshape(-1, int(np.prod(x.shape[2:]))) for m, x in per_second.items()}
    feats = {m: ave.read(m) for m in ("audio", "video")}
    feats = {m: x.reshape(x.shape[0], x.shape[1], -1) for m, x in feats.items()}
    out: dict = {"chance": 100 / len(ave.classes), "majority": float(100 * np.bincount(y[test]).max() / len(test)),
                 "n_train": int(len(train)), "n_test": int(len(test))}
    out["raw"] = {f"{SHORT[m]}->{SHORT[m]}": probe_accuracy(pooled(feats[m][train]), y[train],
                                                             pooled(feats[m][test]), y[test]) for m in feats}
    pcas = {m: PCA(pca_width, whiten=True, random_state=0).fit(per_second[m]) for m in feats}

    def project(m, x, w=None):
        z = pcas[m].transform(x.reshape(-1, x.shape[-1]))
        z = z @ w if w is not None else z
        return z.reshape(x.shape[0], x.shape[1], -1)
    for k in ks:
        z = {m: project(m, feats[m])[..., :k] for m in feats}
        out[f"pca{k}"] = {f"{SHORT[s]}->{SHORT[t]}": probe_accuracy(pooled(z[s][train]), y[train],
                                                                    pooled(z[t][test]), y[test])
                          for s, t in (("video", "audio"), ("audio", "video"))}
        wa, wv, corr = cca(pcas["audio"].transform(per_second["audio"]),
                           pcas["video"].transform(per_second["video"]), k)
        c = {"audio": project("audio", feats["audio"], wa), "video": project("video", feats["video"], wv)}
        out[f"cca{k}"] = {f"{SHORT[s]}->{SHORT[t]}": probe_accuracy(pooled(c[s][train]), y[train],
                                                                    pooled(c[t][test]), y[test])
                          for s in c for t in c}
        out[f"cca{k}_corr"] = [round(float(r), 3) for r in corr]
    return out


def check_discriminative(r: dict) -> list[str]:
    """The acceptance properties of docs/DATA.md, as failures (empty = all hold)."""
    fails = []
    chance = max(r["chance"], r["majority"])
    for d, acc in r["raw"].items():
        if not chance + 20 < acc < 100:
            fails.append(f"raw {d} {acc:.1f} not well above chance {chance:.1f} and below 100")
    for d, acc in r["pca16"].items():
        if acc > chance + 6:
            fails.append(f"unlearned PCA transfer {d} {acc:.1f} is not near chance {chance:.1f}")
    c = r["cca16"]
    for src, tgt in (("V", "A"), ("A", "V")):
        cross, same = c[f"{src}->{tgt}"], c[f"{tgt}->{tgt}"]
        if not chance + 10 < cross < same:
            fails.append(f"aligned (CCA16) {src}->{tgt} {cross:.1f} not between chance+10 and {tgt}->{tgt} {same:.1f}")
        if r["raw"][f"{tgt}->{tgt}"] < r["pca16"][f"{src}->{tgt}"] + 20:
            fails.append(f"raw same-modality {tgt}->{tgt} not well above raw cross-modal {src}->{tgt}")
    return fails


# --------------------------------------------------------------------------- paper-size streaming (child processes)
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports KiB


def _child_write(n: int, out: str) -> dict:
    t0 = time.perf_counter()
    synthesize("paper", 0, out, only=["pretrain"], n_pretrain=n)
    size = (Path(out) / "pretrain.h5").stat().st_size
    return {"write_s": time.perf_counter() - t0, "write_peak_rss_mb": _peak_rss_mb(), "file_gb": size / 1e9}


def _child_read(out: str, batch: int) -> dict:
    corpus = open_world(out).corpus()
    t0, clips, checksum = time.perf_counter(), 0, 0.0
    for b in corpus.iter_batches(batch, seed=0):
        clips += len(b["index"])
        checksum += float(b["video"][:, 0, 0, 0, 0].sum())
    assert clips == len(corpus)
    return {"read_s": time.perf_counter() - t0, "read_peak_rss_mb": _peak_rss_mb(), "clips": clips,
            "video_shape": list(corpus.feature_shape("video")), "video_stored": corpus.file.stored_dtype("video")}


def paper_stream(n: int, out: Path, batch: int = 80) -> dict:
    """Write a paper-profile corpus of n clips and stream it back, each in a fresh process (peak RSS per step)."""
    result = {"n": n, "batch": batch}
    for args in (["--_write", str(n), str(out)], ["--_read", str(out), str(batch)]):
        proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return result


# --------------------------------------------------------------------------- pytest-benchmark cases (make perf)
@pytest.mark.slow
def test_default_world_generation_time(benchmark, tmp_path):
    t0 = time.perf_counter()
    benchmark.pedantic(synthesize, args=("default", 0, tmp_path), rounds=1, iterations=1)
    assert time.perf_counter() - t0 < 120


@pytest.mark.slow
def test_world_is_discriminative(benchmark, tmp_path):
    synthesize("default", 0, tmp_path, only=["pretrain", "ave"])
    result = benchmark.pedantic(world_probe, args=(tmp_path,), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if isinstance(v, dict)})
    assert check_discriminative(result) == []


@pytest.mark.slow
def test_paper_corpus_streams_with_bounded_memory(benchmark, tmp_path):
    result = benchmark.pedantic(paper_stream, args=(500, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["clips"] == 500 and result["read_peak_rss_mb"] < 4096 and result["write_peak_rss_mb"] < 4096


# --------------------------------------------------------------------------- script
def _print_probe(label: str, r: dict) -> None:
    print(f"\n[{label}] AVE-like test clips: {r['n_test']} (train {r['n_train']}); chance {r['chance']:.1f} %, "
          f"majority {r['majority']:.1f} %")
    for key in ("raw", "pca8", "pca16", "cca8", "cca16"):
        print(f"  {key:6s} " + "  ".join(f"{d} {acc:5.1f}" for d, acc in r[key].items()))
    print(f"  cca16 canonical correlations: {r['cca16_corr']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="where to write worlds (default: a temp dir, removed)")
    p.add_argument("--sweep", type=float, nargs="*", default=None, metavar="SIGMA", help="scene sigmas to probe")
    p.add_argument("--paper-stream", type=int, default=None, metavar="N", help="write + stream N paper clips")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    p.add_argument("--_write", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_read", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._write:
        print(json.dumps(_child_write(int(args._write[0]), args._write[1])))
        return 0
    if args._read:
        print(json.dumps(_child_read(args._read[0], int(args._read[1]))))
        return 0
    report: dict = {}
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        if args.paper_stream:
            r = paper_stream(args.paper_stream, Path(tmp) / "paper")
            print(json.dumps(r, indent=2))
            report["paper_stream"] = r
        else:
            root = Path(tmp) / args.profile
            t0 = time.perf_counter()
            synthesize(args.profile, args.seed, root)
            report["generation_s"] = time.perf_counter() - t0
            print(f"{args.profile} world (seed {args.seed}): generated in {report['generation_s']:.1f} s")
            t0 = time.perf_counter()
            report["probe"] = world_probe(root)
            _print_probe(f"{args.profile}, probes took {time.perf_counter() - t0:.0f} s", report["probe"])
            fails = check_discriminative(report["probe"])
            print("  acceptance: " + ("all hold" if not fails else "; ".join(fails)))
            for sigma in args.sweep or []:
                sroot = Path(tmp) / f"scene{sigma}"
                synthesize(args.profile, args.seed, sroot, only=["pretrain", "ave"], scene_sigma=sigma)
                report[f"scene_sigma={sigma}"] = world_probe(sroot)
                _print_probe(f"scene_sigma={sigma}", report[f"scene_sigma={sigma}"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
