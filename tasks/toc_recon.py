"""`toc_recon`: TOC on a single-modal codebook, masked reconstruction (seed 000 Table 3 and Fig. 3).

A VQ-VAE (`methods.vqvae`, VQ-EMA codebook) is trained on scikit-learn's bundled 8×8 digits (1,797 images,
offline; the train/test split is drawn from the seed). The test images are then reconstructed with a fraction of
the D codebook dimensions masked (zeroed by default) in the quantized vectors fed to the decoder (codes unchanged):
  - TOC: keep the top (1 − ratio)·D dims by U_k (Eq. 17) of the trained codebook;
  - random: `n_random` uniformly random keep-sets of the same size.
Per mask ratio we report `mse_toc`, `mse_random` (mean over the random masks; the paper's R100-avg) and `count`
(random masks with a larger MSE than TOC). MSE is per pixel on [0, 1] images.

`fill` says what a masked dimension becomes: `zero` (default; the paper's masking) or `mean`, the codebook's mean
of that dimension. The difference is a diagnostic: TOC drops dimensions with a high inter-code similarity S_k,
which for a codebook with per-dimension offsets are the dimensions with a large |mean|. Zeroing those shifts the
decoder's input far from anything it was trained on, so with `zero` TOC can lose to random masks at low mask
ratios; with `mean` only the information across codes is removed.

Sizes. The paper uses a 128×128 codebook on CelebA-HQ 256×256. Digits are 8×8 = 64 pixels, with a 4×4 latent
grid, so the default keeps 128 codes but halves the width to D = 64 (a multiple of 8, so every ratio k/8 keeps a
whole number of dims); `dim=128` gives the paper's exact codebook shape (about 1.5× slower).

The task is self-contained (its card says `needs_pretrained: false`, `datasets: []`): it ignores `pretrained` and is meant
to run as `run --method vqvae --task toc_recon`. A PNG like Fig. 3 is written into `ctx.artifacts`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from benchmark.contracts import Task, UserError
from methods.toc import check_options, select_dims, toc_scores
from methods.vqvae import train_vqvae

MASK_RATIOS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
N_SHOW = 10  # test images drawn per row of the figure


def direction(ratio: float) -> str:
    """0.375 -> 'mask37.5'."""
    return f"mask{ratio * 100:g}"


@lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits
    images = load_digits().images.astype(np.float32) / 16.0   # [1797, 8, 8], pixel values 0..16
    images.setflags(write=False)
    return images


def digits_split(seed: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8×8 digits scaled to [0, 1], split by a seeded permutation -> (train, test) [N, 1, 8, 8]."""
    images = _digits()
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    x = torch.tensor(images)[:, None]
    return x[order[n_test:]], x[order[:n_test]]


def mask_dims(quantized: torch.Tensor, kept, fill: torch.Tensor) -> torch.Tensor:
    """Keep the `kept` dims of quantized [N, D, h, w]; every other dim k is set to fill[k] (fill [D])."""
    mask = torch.zeros(quantized.shape[1], dtype=quantized.dtype)
    mask[torch.as_tensor(kept, dtype=torch.long)] = 1.0
    return quantized * mask[None, :, None, None] + (fill * (1 - mask))[None, :, None, None]


def masked_mse(model, quantized: torch.Tensor, images: torch.Tensor, kept, fill: torch.Tensor):
    """Decode the masked vectors (see `mask_dims`) -> (per-pixel MSE vs images [N, 1, H, W], reconstructions)."""
    recon = model.decode(mask_dims(quantized, kept, fill))
    return float(((recon - images) ** 2).mean()), recon


def per_image(recon: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """Per-pixel MSE of each image `[N]` (their mean is `masked_mse`'s number)."""
    return ((recon - images) ** 2).mean(dim=(1, 2, 3)).detach().cpu().numpy()


class TOCRecon(Task):
    main_metric = "mse_toc"
    higher_is_better = {"mse_toc": False, "mse_random": False, "count": True}

    def validate(self, cfg):
        if cfg["dim"] < 8 or cfg["dim"] % 8:
            raise UserError(f"toc_recon: dim must be a positive multiple of 8 (mask ratios are k/8), got {cfg['dim']}")
        for key, low in (("codebook_size", 2), ("epochs", 1), ("batch_size", 1), ("n_random", 1), ("hidden", 2),
                          ("dead_after", 1)):
            if cfg[key] < low:
                raise UserError(f"toc_recon: {key} must be >= {low}, got {cfg[key]}")
        if not 0.0 < cfg["test_fraction"] < 1.0:
            raise UserError(f"toc_recon: test_fraction must be in (0, 1), got {cfg['test_fraction']}")
        if cfg["lr"] <= 0:
            raise UserError(f"toc_recon: lr must be > 0, got {cfg['lr']}")
        check_options({"lam": cfg["lam"], "criterion": cfg["criterion"], "max": 1, "min": 0})

    def evaluate(self, pretrained, world, cfg, seed, ctx):
        self.validate(cfg)
        train, test = digits_split(seed, cfg["test_fraction"])
        history: list[dict] = []
        model = train_vqvae(train, codebook_size=cfg["codebook_size"], dim=cfg["dim"], hidden=cfg["hidden"],
                            beta=cfg["beta"], dead_after=cfg["dead_after"], epochs=cfg["epochs"],
                            batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed, progress=ctx.progress,
                            history=history)
        # the VQ-VAE it trains is this cell's pretraining: its losses go where a method's would
        ctx.diagnostics["training"] = {"epochs": len(history), "loss_history": history}
        quantized, codes = model.encode_quantized(test)
        dim, codebook = cfg["dim"], model.codebook.detach()
        scores = toc_scores(codebook, cfg["lam"], cfg["criterion"])
        fill = codebook.mean(0) if cfg["fill"] == "mean" else torch.zeros(dim)
        rng = np.random.default_rng([seed, 1])  # masks independent of the split's stream
        full_mse, _ = masked_mse(model, quantized, test, range(dim), fill)

        metrics, figure_rows = {}, [("original", test[:N_SHOW, 0])]
        for ratio in ctx.progress(MASK_RATIOS, description="toc_recon: masking", total=len(MASK_RATIOS)):
            keep = dim - int(round(ratio * dim))
            mse_toc, recon_toc = masked_mse(model, quantized, test, select_dims(scores, keep), fill)
            random_runs = [masked_mse(model, quantized, test, rng.choice(dim, keep, replace=False), fill)
                           for _ in range(cfg["n_random"])]
            mse_random = np.array([mse for mse, _ in random_runs])
            metrics[direction(ratio)] = {"mse_toc": mse_toc, "mse_random": float(mse_random.mean()),
                                         "count": int((mse_random > mse_toc).sum())}
            # per test image: MSE under the TOC mask and its mean over the random masks; per random mask: its MSE
            ctx.record(direction(ratio), {"images": len(test)}, mse_toc=per_image(recon_toc, test),
                       mse_random=np.mean([per_image(recon, test) for _, recon in random_runs], axis=0),
                       mse_random_masks=mse_random)
            median_run = random_runs[int(np.argsort(mse_random)[len(mse_random) // 2])][1]  # a typical random mask
            figure_rows += [(f"TOC, mask {ratio:.1%}", recon_toc[:N_SHOW, 0]),
                            (f"random, mask {ratio:.1%}", median_run[:N_SHOW, 0])]

        notes = {"mse_unmasked": full_mse, "codes_used": int(codes.unique().numel()),
                 "train_images": len(train), "test_images": len(test)}
        if ctx.artifacts is not None:   # the cell's own directory, kept beside result.json
            from benchmark.plots import image_rows
            path = image_rows(figure_rows, Path(ctx.artifacts) / "toc_recon_fig3.png",
                              title=f"masked dims set to {cfg['fill']}: TOC keeps the top dims by "
                                    f"{cfg['criterion']} score; random = the median-MSE random mask")
            notes["figure"] = str(path)
        ctx.notes["toc_recon"] = notes
        return metrics
