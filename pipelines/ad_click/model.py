"""Ad click models: the same encoding feeds training and serving, so there is no skew.

Baseline: logistic regression on hashed one-hot fields and the hand-picked pairwise crosses of
``CROSSES`` (the book's starting point). Model: DeepFM (first-order weights, factorization-machine
pairwise interactions and an MLP over shared field embeddings) on the same fields plus the crosses of
``DEEP_CROSSES``; both read the historical-CTR numbers. Each model stores its crosses, so serving
encodes a request the way that model was trained. Both are Platt-calibrated on a held-out day so the
service returns probabilities a bidder can use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.training import EarlyStopping

CATEGORICAL = ["gender", "country", "language", "age_bucket", "category", "advertiser_id", "campaign_id",
               "ad_id", "target_country", "position", "device", "hour"]
NUMERIC = ["ad_impressions", "ad_ctr", "user_impressions", "user_ctr", "user_ad_impressions", "user_ad_ctr"]
DERIVED = {"age_bucket": ("age", 5), "daypart": ("hour", 4)}
"""Fields bucketed from a column: name -> (source column, bucket width). ``daypart`` only feeds crosses."""
Cross = tuple[str, ...]
CROSSES: tuple[Cross, ...] = (("category", "age_bucket"), ("category", "gender"), ("category", "country"),
                              ("age_bucket", "gender"), ("ad_id", "position"), ("category", "device"))
"""The baseline's hand-picked pairs: a linear model sees no interaction it is not given."""
DEEP_CROSSES: tuple[Cross, ...] = (("category", "age_bucket", "gender"), ("category", "daypart"),
                                   ("position", "device"))
"""DeepFM's crosses (docs/ad_click.md#models has the measurements). Its FM already covers every pair of
fields, and adding the baseline's pairs made it slightly worse; what pairs cannot express is the
three-way category x age-gender segment term, and two small context tables (category x 4-hour daypart,
position x device) are learned better as cells than as factorized pairs."""
CONTEXT = ["position", "device", "hour"]
"""Request-time fields; serving scores every ad as if shown in the top slot (position 1)."""
BUCKETS = 2**18


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


INT_FIELDS = {"advertiser_id", "campaign_id", "ad_id", "position", "hour", *DERIVED}


@cache
def _salt(name: str) -> np.uint64:
    """Per-field salt, so equal values of different fields hash apart; cached: serving reuses the names."""
    return np.uint64(pd.util.hash_array(np.array([name], dtype=object))[0])


def _field_ids(hashes: dict[str, np.ndarray], n: int, crosses: tuple[Cross, ...]) -> np.ndarray:
    """Bucket ids (n, fields + crosses) from per-field hashes of length n or 1 (broadcast).

    The one place fields and crosses become ids, for training and serving alike.
    """
    ids = np.empty((n, len(CATEGORICAL) + len(crosses)), np.uint64)  # columns broadcast on assignment
    for j, name in enumerate(CATEGORICAL):
        ids[:, j] = hashes[name]
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        for j, names in enumerate(crosses, start=len(CATEGORICAL)):
            h = hashes[names[0]]
            for name in names[1:]:
                h = h * np.uint64(1_000_003) + hashes[name]
            ids[:, j] = h ^ _salt("x".join(names))
    return (ids % np.uint64(BUCKETS)).astype(np.int64)


def _field_hash(values: pd.Series, name: str) -> np.ndarray:
    """A stable 64-bit hash per value, independent of the column's dtype.

    Online reads return int columns as floats when one entity is missing; normalising ids to int64
    (and text to str) first keeps training and serving hashes identical.
    """
    if name in INT_FIELDS:
        arr = pd.to_numeric(values, errors="coerce").fillna(-1).to_numpy(np.int64)
    else:
        arr = values.astype(object).where(values.notna(), "?").astype(str).to_numpy(object)
    return pd.util.hash_array(arr) ^ _salt(name)


def encode(frame: pd.DataFrame, prior: float, crosses: tuple[Cross, ...] = CROSSES) -> tuple[np.ndarray, np.ndarray]:
    """Hashed field ids (n, fields + crosses) and numeric features (n, 6) from a feature frame.

    Missing history (a cold-start user or ad) reads as zero impressions at the prior CTR.
    """
    cols = {c: frame[c] for c in CATEGORICAL if c not in DERIVED}
    cols |= {name: pd.to_numeric(frame[src], errors="coerce") // width for name, (src, width) in DERIVED.items()}
    hashes = {name: _field_hash(values, name) for name, values in cols.items()}
    num = []
    for prefix in ("ad", "user", "user_ad"):
        n = pd.to_numeric(frame[f"{prefix}_impressions"], errors="coerce").fillna(0).to_numpy(float)
        r = pd.to_numeric(frame[f"{prefix}_ctr"], errors="coerce").fillna(prior).to_numpy(float)
        num += [np.log1p(n) / 5, _logit(r) - _logit(np.array([prior]))[0]]  # both O(1)
    return _field_ids(hashes, len(frame), crosses), np.stack(num, axis=1).astype(np.float32)


def encode_columns(columns: dict[str, Any], n: int, prior: float,
                   crosses: tuple[Cross, ...] = CROSSES) -> tuple[np.ndarray, np.ndarray]:
    """``encode`` for one serving request, without pandas frames: the same ids and numbers, ~15x faster.

    Each column is a scalar shared by all ``n`` rows (the user's and the request's fields) or a sequence
    of ``n`` values (the candidates'); ``None`` is missing. Hashes are computed once per distinct
    column, not per row, with the same ``pd.util.hash_array`` as training (tests pin the equality).
    """
    def arr(values: Any, kind: str) -> np.ndarray:
        seq = values if isinstance(values, list | tuple | np.ndarray) else [values]
        if kind == "int":
            return np.array([-1 if v is None or v != v else int(v) for v in seq], np.int64)
        if kind == "str":
            return np.array(["?" if v is None or v != v else str(v) for v in seq], object)
        return np.array([np.nan if v is None else v for v in seq], float)

    cols = {c: columns[c] for c in CATEGORICAL if c not in DERIVED}
    cols |= {name: arr(columns[src], "float") // width for name, (src, width) in DERIVED.items()}
    # One hash_array call per kind: its per-call overhead dominates at ~100 rows.
    ints = {c: arr(v, "int") for c, v in cols.items() if c in INT_FIELDS}
    texts = {c: arr(v, "str") for c, v in cols.items() if c not in INT_FIELDS}
    hashes: dict[str, np.ndarray] = {}
    for group in (ints, texts):
        flat = pd.util.hash_array(np.concatenate(list(group.values())), categorize=False)
        start = 0
        for name, values in group.items():
            hashes[name] = flat[start:start + len(values)] ^ _salt(name)
            start += len(values)
    num = np.empty((n, 6))
    for j, prefix in enumerate(("ad", "user", "user_ad")):
        impressions = np.nan_to_num(arr(columns[f"{prefix}_impressions"], "float"), nan=0.0)
        rate = arr(columns[f"{prefix}_ctr"], "float")
        rate = np.where(np.isnan(rate), prior, rate)
        num[:, 2 * j] = np.log1p(impressions) / 5
        num[:, 2 * j + 1] = _logit(rate) - _logit(np.array([prior]))[0]
    return _field_ids(hashes, n, crosses), num.astype(np.float32)


@dataclass
class Platt:
    """Logistic recalibration of a score on held-out data."""

    a: float = 1.0
    b: float = 0.0

    def fit(self, score: np.ndarray, y: np.ndarray) -> Platt:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(_logit(score)[:, None], y)
        self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(score) + self.b)))


@dataclass
class ClickModel:
    """What the registry stores: the encoder's prior and crosses, a fitted predictor and its calibration.

    ``crosses`` defaults to the baseline's, which is also what models pickled before it existed used.
    """

    kind: str
    prior: float
    predictor: Any
    calibration: Platt = field(default_factory=Platt)
    crosses: tuple[Cross, ...] = CROSSES

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        return self.raw_encoded(*encode(frame, self.prior, self.crosses))

    def raw_encoded(self, ids: np.ndarray, num: np.ndarray) -> np.ndarray:
        """Uncalibrated scores of encoded rows."""
        if self.kind == "logistic":
            return self.predictor.predict_proba(_sparse(ids, num))[:, 1]
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self.predictor(torch.from_numpy(ids), torch.from_numpy(num))).numpy()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated click probabilities, one per row."""
        return self.calibration(self.raw(frame))

    def predict_columns(self, columns: dict[str, Any], n: int) -> np.ndarray:
        """``predict`` for one serving request given as columns (see ``encode_columns``)."""
        return self.calibration(self.raw_encoded(*encode_columns(columns, n, self.prior, self.crosses)))


def _sparse(ids: np.ndarray, num: np.ndarray) -> Any:
    """One-hot hashed fields plus numeric columns as one CSR matrix."""
    from scipy import sparse

    n, k = ids.shape
    onehot = sparse.csr_matrix((np.ones(n * k, np.float32), ids.ravel(), np.arange(0, n * k + 1, k)),
                               shape=(n, BUCKETS))
    return sparse.hstack([onehot, sparse.csr_matrix(num)], format="csr")


def train_logistic(train: pd.DataFrame, valid: pd.DataFrame, prior: float, c: float,
                   crosses: tuple[Cross, ...] = CROSSES) -> ClickModel:
    """The baseline: L2 logistic regression on hashed one-hots and crosses."""
    from sklearn.linear_model import LogisticRegression

    ids, num = encode(train, prior, crosses)
    lr = LogisticRegression(C=c, max_iter=300, solver="lbfgs").fit(_sparse(ids, num), train["clicked"])
    model = ClickModel("logistic", prior, lr, crosses=crosses)
    model.calibration = Platt().fit(model.raw(valid), valid["clicked"].to_numpy())
    return model


def build_deepfm(n_fields: int, n_numeric: int, dim: int, hidden: list[int], dropout: float) -> Any:
    """DeepFM: first-order weights + FM pairwise interactions + an MLP over the same field embeddings."""
    import torch
    from torch import nn

    class DeepFM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(BUCKETS, dim, sparse=True)  # only touched rows get updates
            nn.init.normal_(self.embedding.weight, std=0.05)
            self.wide = nn.Embedding(BUCKETS, 1, sparse=True)  # first-order weight per field value
            nn.init.zeros_(self.wide.weight)
            self.numeric = nn.Linear(n_numeric, 1)
            layers: list[nn.Module] = []
            prev = n_fields * dim + n_numeric
            for h in hidden:
                layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
                prev = h
            self.deep = nn.Sequential(*layers, nn.Linear(prev, 1))

        def forward(self, ids: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
            e = self.embedding(ids)  # (batch, fields, dim)
            fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)  # all pairwise dot products in O(fields)
            deep = self.deep(torch.cat([e.flatten(1), num], dim=1)).squeeze(1)
            return self.wide(ids).sum(dim=(1, 2)) + self.numeric(num).squeeze(1) + fm + deep

    return DeepFM()


def train_deepfm(train: pd.DataFrame, valid: pd.DataFrame, prior: float, params: dict[str, Any],
                 seed: int, crosses: tuple[Cross, ...] = DEEP_CROSSES) -> ClickModel:
    """Train DeepFM with (sparse) Adam and early stopping on the validation day's log loss.

    One intra-op thread: multi-threaded CPU reductions are not bit-reproducible, and on small batches the
    jitter moved the early-stopping point between otherwise identical runs.
    """
    from pipelines.core.threads import torch_threads

    with torch_threads(1):
        return _train_deepfm(train, valid, prior, params, seed, crosses)


def _train_deepfm(train: pd.DataFrame, valid: pd.DataFrame, prior: float, params: dict[str, Any],
                  seed: int, crosses: tuple[Cross, ...]) -> ClickModel:
    import torch
    from sklearn.metrics import log_loss

    torch.manual_seed(seed)
    ids, num = encode(train, prior, crosses)
    y = torch.from_numpy(train["clicked"].to_numpy(np.float32))
    vy = valid["clicked"].to_numpy()
    net = build_deepfm(ids.shape[1], num.shape[1], params["embedding_dim"], params["hidden"], params["dropout"])
    sparse = [net.embedding.weight, net.wide.weight]
    sparse_opt = torch.optim.SparseAdam(sparse, lr=params["lr_embedding"])
    dense_opt = torch.optim.Adam([p for p in net.parameters() if all(p is not q for q in sparse)],
                                 lr=params["lr"], weight_decay=params["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tids, tnum = torch.from_numpy(ids), torch.from_numpy(num)
    gen = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(params["patience"], 1e-6, lower_is_better=True)
    model = ClickModel("deepfm", prior, net, crosses=crosses)
    batches = [b for _ in range(params["epochs"]) for b in torch.randperm(len(y), generator=gen).split(
        params["batch_size"])]
    check_every = max(1, len(batches) // (params["epochs"] * params["checks_per_epoch"]))
    for step, batch in enumerate(batches, start=1):
        net.train()
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        # L2 on the embedding rows this batch touched: SparseAdam has no weight decay of its own.
        touched = net.embedding(tids[batch]).pow(2).sum() + net.wide(tids[batch]).pow(2).sum()
        loss = loss_fn(net(tids[batch], tnum[batch]), y[batch]) + params["embedding_l2"] * touched / len(batch)
        loss.backward()
        sparse_opt.step()
        dense_opt.step()
        if step % check_every and step != len(batches):
            continue
        # CTR models overfit sparse ids within an epoch or two: check often, keep the best, stop on a rise.
        net.eval()
        if stopper.check(float(log_loss(vy, model.raw(valid), labels=[0, 1])), net):
            break
    stopper.restore(net)
    model.calibration = Platt().fit(model.raw(valid), vy)
    return model
