"""Figures as pure functions: arrays in, one PNG out (written atomically), a small summary dict back.

Figures are drawn on matplotlib's Agg canvas directly (`Figure` + `FigureCanvasAgg`), never through pyplot, so
no global backend or figure state is touched and the functions are safe in workers and tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    """Render the PNG atomically: a reader never sees half an image."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))


# --------------------------------------------------------------------------- codebook similarity (seed 000 Fig. 2)
def cosine_similarity_matrix(codebook) -> np.ndarray:
    """Cosine similarity between all codes. codebook [L, D] -> [L, L] (a zero code has similarity 0)."""
    e = _as_numpy(codebook)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit = e / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean over i≠j of matrix[i, j] (Eq. 12's average inter-code similarity, for cosine matrices)."""
    n = matrix.shape[0]
    return float((matrix.sum() - np.trace(matrix)) / (n * (n - 1)))


def toc_heatmap(codebook, selected: Sequence[int], path, title: str = "") -> dict:
    """Side-by-side code-by-code cosine similarity before / after keeping only the `selected` dims.

    codebook [L, D]; selected: kept dimension indices. Writes a PNG at `path`; returns the path and the mean
    off-diagonal cosine similarity before and after (Eq. 12's S, which TOC lowers: more distinct codes, the effect
    Fig. 2 shows), and the mean |cos| (which need not fall: high-variance dims can make codes anti-correlated).
    """
    e = _as_numpy(codebook)
    if e.ndim != 2:
        raise ValueError(f"codebook must be 2-D [L, D], got shape {e.shape}")
    kept = np.asarray(selected, dtype=np.int64)
    before, after = cosine_similarity_matrix(e), cosine_similarity_matrix(e[:, kept])
    summary = {"mean_cos_before": mean_off_diagonal(before), "mean_cos_after": mean_off_diagonal(after),
               "mean_abs_cos_before": mean_off_diagonal(np.abs(before)),
               "mean_abs_cos_after": mean_off_diagonal(np.abs(after))}
    fig = _figure(11, 5)
    axes = fig.subplots(1, 2)
    for ax, matrix, label, key in ((axes[0], before, f"original codebook (D={e.shape[1]})", "before"),
                                   (axes[1], after, f"after TOC (Q={len(kept)})", "after")):
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"{label}\nmean off-diagonal cos = {summary[f'mean_cos_{key}']:.3f} "
                     f"(|cos|: {summary[f'mean_abs_cos_{key}']:.3f})", fontsize=10)
        ax.set_xlabel("code")
        ax.set_ylabel("code")
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    summary["path"] = str(_save(fig, path))
    return summary


# --------------------------------------------------------------------------- masked reconstructions (seed 000 Fig. 3)
def image_rows(rows: Sequence[tuple[str, np.ndarray]], path, title: str = "") -> Path:
    """A grid of grey images: one labelled row per (label, images [n, H, W]) with values in [0, 1]."""
    n_rows = len(rows)
    n_cols, height, width = _as_numpy(rows[0][1]).shape
    fig = _figure(max(4.0, 0.55 * n_cols + 1.6), 0.6 * n_rows + 0.6)
    axes = np.atleast_1d(fig.subplots(n_rows, 1))
    for ax, (label, images) in zip(axes, rows):
        images = _as_numpy(images)
        gap = np.full((height, 1), np.nan)
        strip = np.concatenate([part for img in images for part in (img, gap)][:-1], axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
