"""Figures of task results (matplotlib, the optional `plot` extra; Agg backend, no display needed): PNG, or PDF
or SVG when the output name ends so (`image_format`).

Each function writes one finished figure to the path it is given; the commands hand it a temporary path and
rename it into place, so an interrupted run leaves no figure behind.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.tasks.metrics import auprc, auroc, pr_curve, roc_curve, spearman


def require_matplotlib(option: str = "--plot") -> None:
    """Fail before any work starts when matplotlib is missing (it is an optional dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DnahnetError(f"{option} needs matplotlib: pip install 'dnahnet[plot]' (or pip install matplotlib)") from None


IMAGE_FORMATS = ("png", "pdf", "svg")


def image_format(name: str) -> str:
    """The figure format an output name asks for: its extension (.png, .pdf, .svg), PNG for a name without one.
    The commands pass it on because they write to a temporary name first; another extension (a .jpg, which got
    a PNG under that name) is a DnahnetError, raised by the commands before any work."""
    base = os.path.basename(name)
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else "png"
    if ext not in IMAGE_FORMATS:
        raise DnahnetError(f"--plot {name}: unknown image type .{ext}; name it .png, .pdf or .svg")
    return ext


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v: float) -> str:
    return "NA" if not math.isfinite(v) else f"{v:.3f}"


def pr_staircase(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The precision-recall curve as drawn with step(where="pre"): average precision weighs p_k over recall
    (r_k-1, r_k], so each level is drawn up to its point, from recall 0; the area under it is the AUPRC."""
    if not len(recall):
        return np.asarray(recall, dtype=float), np.asarray(precision, dtype=float)
    return np.r_[0.0, recall], np.r_[precision[:1], precision]


def plot_essentiality_curves(path: str, labels: np.ndarray, predictors: Mapping[str, np.ndarray], title: str,
                             fmt: str = "png") -> None:
    """ROC and precision-recall curves of each predictor (higher = predicted essential) on the same genes,
    with the chance lines (AUROC 0.5; AUPRC = the essential fraction)."""
    plt = _pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.4))
    for i, (name, scores) in enumerate(predictors.items()):
        fpr, tpr = roc_curve(labels, scores)
        rec, prec = pr_curve(labels, scores)
        style = dict(lw=1.8 if i == 0 else 1.0, color=f"C{i}")
        roc_ax.plot(fpr, tpr, label=f"{name} (AUROC {_fmt(auroc(labels, scores))})", **style)
        pr_ax.step(*pr_staircase(rec, prec), where="pre", label=f"{name} (AUPRC {_fmt(auprc(labels, scores))})", **style)
    y = np.asarray(labels, dtype=np.float64)
    roc_ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    if y.size:  # no labelled gene: no chance line (and no numpy warning under -q)
        pr_ax.axhline(float(np.mean(y > 0.5)), ls=":", color="grey", lw=0.8)
    roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    roc_ax.legend(loc="lower right", fontsize=8)
    pr_ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{title}: {int((y > 0.5).sum())} essential of {y.size} genes")
    fig.tight_layout()
    fig.savefig(path, format=fmt, dpi=120)
    plt.close(fig)


def plot_score_distribution(path: str, scores: Sequence[float], title: str, xlabel: str, fmt: str = "png") -> None:
    """Histogram of per-gene scores (no labels to evaluate against)."""
    plt = _pyplot()
    s = np.asarray([v for v in scores if math.isfinite(v)], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(s, bins=min(60, max(5, s.size // 10)), color="C0")
    if s.size:
        ax.axvline(float(np.median(s)), color="k", ls=":", lw=0.8, label=f"median {np.median(s):.3g}")
        ax.legend()
    ax.set(xlabel=xlabel, ylabel="genes", title=f"{title} ({s.size} genes)")
    fig.tight_layout()
    fig.savefig(path, format=fmt, dpi=120)
    plt.close(fig)


def plot_dms_scatter(path: str, predicted: np.ndarray, measured: np.ndarray, title: str,
                     baselines: Mapping[str, float], fmt: str = "png") -> None:
    """Model score against measured fitness, one point per mutant, with Spearman's rho (and the baselines')."""
    plt = _pyplot()
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(6, 4.6))
    ax.scatter(x[keep], y[keep], s=6, alpha=0.5, color="C0", linewidths=0)
    note = "; ".join(f"{k} {_fmt(v)}" for k, v in baselines.items())
    ax.set(xlabel="dnahnet delta = LL(mutant) - LL(wild type) (nats)", ylabel="measured fitness (DMS score)",
           title=f"{title}: Spearman rho {_fmt(spearman(x, y))} (n = {int(keep.sum())})")
    if note:
        ax.text(0.01, 0.01, f"baselines: {note}", transform=ax.transAxes, fontsize=8, va="bottom")
    fig.tight_layout()
    fig.savefig(path, format=fmt, dpi=120)
    plt.close(fig)
