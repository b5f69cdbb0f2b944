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
