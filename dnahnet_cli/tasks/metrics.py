"""Evaluation metrics in plain numpy (AUROC, AUPRC, Spearman), so the CLI needs neither scipy nor sklearn.

Definitions match scikit-learn's `roc_auc_score` / `average_precision_score` and scipy's `spearmanr`
(average ranks for ties); NaN pairs are dropped first and the number of pairs used is reported.
"""

from __future__ import annotations

import math

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's 'average' method)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1..ends
    ranks = np.empty(xs.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _finite_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("inputs must have the same length")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (P*N)); NaN when one class is missing."""
    y, s = _finite_pairs(labels, scores)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    r = rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over score thresholds of (recall step) x precision; NaN without positives."""
    tps, _, taken = _threshold_counts(labels, scores)
    if not tps.size or tps[-1] == 0:
        return math.nan
    return float(np.sum(np.diff(np.r_[0.0, tps / tps[-1]]) * (tps / taken)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN with <2 pairs or a constant input."""
    a, b = _finite_pairs(x, y)
    if a.size < 2:
        return math.nan
    ra, rb = rankdata(a) - (a.size + 1) / 2.0, rankdata(b) - (b.size + 1) / 2.0
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denom) if denom > 0 else math.nan


def classification_summary(labels: np.ndarray, scores: np.ndarray) -> dict:
    """AUROC, AUPRC and the counts they were computed on (higher score = predicted positive)."""
    y, s = _finite_pairs(labels, scores)
    n_pos = int((y > 0.5).sum())
    return {
        "auroc": auroc(y, s),
        "auprc": auprc(y, s),
        "n": int(y.size),
        "n_positive": n_pos,
        "n_negative": int(y.size - n_pos),
        "positive_rate": n_pos / y.size if y.size else math.nan,
    }


def _threshold_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, rows taken) at each distinct score, highest score first; tied
    scores form one step."""
    y, s = _finite_pairs(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], (y[order] > 0.5).astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.zeros(0, dtype=int)
    return np.cumsum(y)[last_of_tie], np.cumsum(1 - y)[last_of_tie], last_of_tie + 1


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) from (0, 0) to (1, 1); its trapezoid area equals `auroc`."""
    tps, fps, _ = _threshold_counts(labels, scores)
    if not tps.size:
        return np.zeros(1), np.zeros(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, highest first; sum(d recall x precision) = `auprc`."""
    tps, _, taken = _threshold_counts(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tps / tps[-1] if tps.size else tps, tps / taken
