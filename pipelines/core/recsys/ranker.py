"""Stage 2 of a two-stage recommender: LightGBM scores the candidates with richer features.

LightGBM is imported when a ranker is fit (or unpickled), not when this module is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipelines.core.recsys.arrays import as_floats

PREDICT_THREADS = 1
"""LightGBM threads per predict call: a request is a few hundred rows, and each service worker is a process."""


@dataclass
class Ranker:
    """LightGBM over (user, video) rows: lambdarank grouped by user, or binary on the label.

    Categorical columns keep the categories seen in training, so a value first seen at serving time is
    "missing" to the trees instead of silently taking another category's code.
    """

    features: list[str]
    categorical: list[str] = field(default_factory=list)
    objective: str = "lambdarank"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    categories: dict[str, list[Any]] = field(default_factory=dict)
    booster: Any = None

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.02, "num_leaves": 15, "min_data_in_leaf": 200, "feature_fraction": 0.9,
        "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "num_boost_round": 500,
        "early_stopping_rounds": 100, "num_threads": 2}
    """Slow, heavily regularised trees: ranker windows hold ~1k positives among ~100k candidate rows, and
    on VideoWorld these beat the usual 0.05 / 31 leaves / 50 per leaf by 4-6% recall@10. Two threads to
    train, as the flow runs one step at a time (event's LightGBM 9.9 s -> ~6 s on 2 cores, the same
    metrics; two were 3x slower only while a background worker shared the cores, as it no longer does);
    one to predict, where service workers already run side by side (``PREDICT_THREADS``)."""

    def _matrix(self, rows: Mapping[str, Any]) -> np.ndarray:
        """The (rows, features) float matrix LightGBM reads: numbers, NaN for missing, category codes.

        One encoding for training, batch scoring and a single request: LightGBM's own pandas path does
        the same (categories to codes, unknown to NaN) but costs milliseconds of bookkeeping per call.
        """
        missing = [c for c in self.features if c not in rows]
        if missing:
            raise ValueError(f"ranker input lacks feature columns {missing}")
        return np.column_stack([self._codes(c, rows[c]) if c in self.categories else as_floats(rows[c])
                                for c in self.features])

    def _codes(self, name: str, values: Any) -> np.ndarray:
        """Index of each value among the training categories; NaN for missing or never-seen values."""
        codes = self._category_index[name].get_indexer(np.asarray(values, dtype=object)).astype(float)
        codes[codes < 0] = np.nan  # None, NaN and unseen values are not in the index
        return codes

    @cached_property
    def _category_index(self) -> dict[str, pd.Index]:
        return {c: pd.Index(cats, dtype=object) for c, cats in self.categories.items()}

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, label: str = "positive",
            group: str = "user_id") -> Ranker:
        """Train on ``train`` (early-stopped on ``valid`` when given); rows of a group need not be adjacent."""
        import lightgbm as lgb

        if self.objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {self.objective!r}")
        self.categories = {c: sorted(train[c].dropna().astype(str).unique()) for c in self.categorical}
        self.__dict__.pop("_category_index", None)  # refit: new categories
        cfg = self.DEFAULTS | self.params
        rounds, stop = cfg.pop("num_boost_round"), cfg.pop("early_stopping_rounds")
        cfg |= {"objective": self.objective, "seed": self.seed, "deterministic": True, "verbose": -1}
        if self.objective == "lambdarank":
            cfg |= {"metric": "ndcg", "eval_at": [10]}
        else:
            cfg |= {"metric": "auc"}

        def dataset(frame: pd.DataFrame, reference: Any = None) -> Any:
            frame = frame.sort_values(group, kind="stable")
            sizes = frame.groupby(group, sort=False).size().to_numpy() if self.objective == "lambdarank" else None
            return lgb.Dataset(self._matrix(frame), frame[label].to_numpy(), group=sizes,
                               feature_name=self.features, categorical_feature=self.categorical or "auto",
                               reference=reference, free_raw_data=False)

        dtrain = dataset(train)
        sets, callbacks = [], []
        if valid is not None:  # the training rows are not scored each round: AUC over them cost more than the trees
            sets.append(dataset(valid, dtrain))
            callbacks.append(lgb.early_stopping(stop, verbose=False))
        self.booster = lgb.train(cfg, dtrain, num_boost_round=rounds, valid_sets=sets, callbacks=callbacks)
        return self

    def predict(self, rows: Mapping[str, Any]) -> np.ndarray:
        """A ranking score per row (higher is better; a probability for the binary objective).

        ``rows`` is a DataFrame or any column mapping (e.g. a request's ``Columns``).
        """
        if self.booster is None:
            raise RuntimeError("Ranker.predict called before fit")
        return self.booster.predict(self._matrix(rows), num_iteration=self.booster.best_iteration or None,
                                    num_threads=PREDICT_THREADS)
