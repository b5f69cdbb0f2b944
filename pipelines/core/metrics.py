"""Offline metrics shared by the case studies; thin, named wrappers over scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score


def normalized_cross_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """NE: log loss of ``p`` divided by the log loss of always predicting the observed CTR (< 1 is useful)."""
    base = np.full(len(y), float(np.mean(y)))
    return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]) / log_loss(y, base, labels=[0, 1]))


def calibration_table(y: np.ndarray, p: np.ndarray, buckets: int = 10) -> pd.DataFrame:
    """Predicted vs observed rate per quantile bucket of the prediction."""
    frame = pd.DataFrame({"y": y, "p": p})
    frame["bucket"] = pd.qcut(frame["p"].rank(method="first"), buckets, labels=False)
    out = frame.groupby("bucket").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
    return out.reset_index()


def binary_report(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The book's ad-click metrics for one predictor: log loss, NE, ROC-AUC, mean predicted vs observed."""
    return {
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ne": normalized_cross_entropy(y, p),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.mean() < 1 else float("nan"),
        "mean_predicted": float(np.mean(p)),
        "observed_rate": float(np.mean(y)),
    }


def bootstrap_lift(treatment: np.ndarray, baseline: np.ndarray, confidence: float = 0.95,
                   resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Relative lift of ``mean(treatment)`` over ``mean(baseline)`` with a paired bootstrap interval.

    Why: a lift on a few test users is noise unless its interval says otherwise. Rows are units (users)
    scored by both systems, so they are resampled together (``scipy.stats.bootstrap``, paired, percentile
    interval, fixed seed for reproducible reports). ``low > 0`` means the treatment beats the baseline.
    """
    from scipy.stats import bootstrap

    t, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    if t.shape != b.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(f"need two equal-length 1-D per-unit arrays of >= 2 rows, got {t.shape} and {b.shape}")

    def lift(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        base = np.mean(y, axis=axis)
        return np.mean(x, axis=axis) / np.where(base > 0, base, np.nan) - 1

    ci = bootstrap((t, b), lift, paired=True, vectorized=True, n_resamples=resamples, confidence_level=confidence,
                   method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return {"lift": float(lift(t, b)), "low": float(ci.low), "high": float(ci.high), "units": len(t),
            "confidence": confidence}
