"""Metric code checked against scikit-learn and scipy on known and random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnahnet_cli.tasks.metrics import auprc, auroc, classification_summary, rankdata, spearman

sklearn_metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def test_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert auroc(y, s) == pytest.approx(0.75)
    assert auprc(y, s) == pytest.approx(0.8333333333)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    np.testing.assert_allclose(rankdata([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


@pytest.mark.parametrize("seed", range(5))
def test_against_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.15).astype(int)
    s = np.round(rng.normal(size=n) + y * 0.8, 1)  # rounding makes many ties
    assert auroc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(sklearn_metrics.average_precision_score(y, s), abs=1e-12)
    x = np.round(rng.normal(size=n), 1)
    z = np.round(x + rng.normal(size=n), 1)
    assert spearman(x, z) == pytest.approx(stats.spearmanr(x, z).statistic, abs=1e-12)
    np.testing.assert_allclose(rankdata(s), stats.rankdata(s))


def test_nan_and_degenerate_inputs():
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, np.nan, 0.8, 0.1, 0.2])
    assert auroc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y[[0, 2, 3, 4]], s[[0, 2, 3, 4]]))
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))
    assert math.isnan(auprc([0, 0], [0.1, 0.2]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    summary = classification_summary(y, s)
    assert (summary["n"], summary["n_positive"], summary["n_negative"]) == (4, 3, 1)


def test_roc_and_pr_curves_integrate_to_auroc_and_auprc():
    from dnahnet_cli.tasks.metrics import auprc, auroc, pr_curve, roc_curve

    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.25
    s = np.round(rng.normal(size=400) + y, 1)  # rounded: many ties
    fpr, tpr = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s), abs=1e-12)
    rec, prec = pr_curve(y, s)
    assert np.sum(np.diff(np.r_[0.0, rec]) * prec) == pytest.approx(auprc(y, s), abs=1e-12)
    from dnahnet_cli.tasks.plots import pr_staircase  # the curve --plot draws has the AUPRC in its legend as area

    x, level = pr_staircase(rec, prec)  # drawn with where="pre": level[i] spans (x[i-1], x[i]]
    assert np.sum(np.diff(x) * level[1:]) == pytest.approx(auprc(y, s), abs=1e-12)
    yy, ss = np.array([1, 0, 0, 0, 1, 1]), np.arange(6.0, 0, -1)  # the plot drew 0.217 against AUPRC 0.633
    x, level = pr_staircase(*pr_curve(yy, ss))
    assert np.sum(np.diff(x) * level[1:]) == pytest.approx(auprc(yy, ss)) == pytest.approx(0.6333, abs=1e-4)


def test_essentiality_plot_without_labelled_genes_is_quiet(tmp_path):
    """-q with --plot and no labelled gene scored: numpy's 'Mean of empty slice' warnings reached stderr."""
    import warnings

    from dnahnet_cli.tasks.plots import plot_essentiality_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_essentiality_curves(str(tmp_path / "p.png"), np.array([]), {"score": np.array([])}, "t")
    assert (tmp_path / "p.png").stat().st_size > 0
