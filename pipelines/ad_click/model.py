"""Ad click models: the same encoding feeds training and serving, so there is no skew.

Baseline: logistic regression on hashed one-hot fields and their crosses (the book's starting point).
Model: a DCN-v2 style network (explicit cross layers beside a deep tower) over field embeddings and
the historical-CTR numbers. Both are Platt-calibrated on a held-out day so the service returns
probabilities a bidder can use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CATEGORICAL = ["gender", "country", "language", "age_bucket", "category", "advertiser_id", "campaign_id",
               "ad_id", "target_country", "position", "device", "hour"]
NUMERIC = ["ad_impressions", "ad_ctr", "user_impressions", "user_ctr", "user_ad_impressions", "user_ad_ctr"]
CROSSES = [("category", "age_bucket"), ("category", "gender"), ("category", "country"),
           ("age_bucket", "gender"), ("ad_id", "position"), ("category", "device")]
CONTEXT = ["position", "device", "hour"]
"""Request-time fields; serving scores every ad as if shown in the top slot (position 1)."""
BUCKETS = 2**18


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def encode(frame: pd.DataFrame, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Hashed field ids (n, fields + crosses) and numeric features (n, 6) from a feature frame.

    Missing history (a cold-start user or ad) reads as zero impressions at the prior CTR.
    """
    f = frame.copy()
    f["age_bucket"] = (pd.to_numeric(f["age"], errors="coerce").fillna(-5) // 5).astype(int)
    cols = []
    for name in CATEGORICAL:
        cols.append(name + "=" + f[name].astype(str).fillna("?"))
    for a, b in CROSSES:
        cols.append(a + "x" + b + "=" + f[a].astype(str) + "|" + f[b].astype(str))
    ids = np.stack([pd.util.hash_array(c.to_numpy(dtype=object)) % BUCKETS for c in cols], axis=1)
    num = []
    for prefix in ("ad", "user", "user_ad"):
        n = pd.to_numeric(f[f"{prefix}_impressions"], errors="coerce").fillna(0).to_numpy(float)
        r = pd.to_numeric(f[f"{prefix}_ctr"], errors="coerce").fillna(prior).to_numpy(float)
        num += [np.log1p(n) / 5, _logit(r) - _logit(np.array([prior]))[0]]  # both O(1)
    return ids.astype(np.int64), np.stack(num, axis=1).astype(np.float32)


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
    """What the registry stores: an encoder prior, a fitted predictor and its calibration."""

    kind: str
    prior: float
    predictor: Any
    calibration: Platt = field(default_factory=Platt)

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        ids, num = encode(frame, self.prior)
        if self.kind == "logistic":
            return self.predictor.predict_proba(_sparse(ids, num))[:, 1]
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self.predictor(torch.from_numpy(ids), torch.from_numpy(num))).numpy()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated click probabilities, one per row."""
        return self.calibration(self.raw(frame))


def _sparse(ids: np.ndarray, num: np.ndarray) -> Any:
    """One-hot hashed fields plus numeric columns as one CSR matrix."""
    from scipy import sparse

    n, k = ids.shape
    onehot = sparse.csr_matrix((np.ones(n * k, np.float32), ids.ravel(), np.arange(0, n * k + 1, k)),
                               shape=(n, BUCKETS))
    return sparse.hstack([onehot, sparse.csr_matrix(num)], format="csr")


def train_logistic(train: pd.DataFrame, valid: pd.DataFrame, prior: float, c: float) -> ClickModel:
    """The baseline: L2 logistic regression on hashed one-hots and crosses."""
    from sklearn.linear_model import LogisticRegression

    ids, num = encode(train, prior)
    lr = LogisticRegression(C=c, max_iter=300, solver="lbfgs").fit(_sparse(ids, num), train["clicked"])
    model = ClickModel("logistic", prior, lr)
    model.calibration = Platt().fit(model.raw(valid), valid["clicked"].to_numpy())
    return model


def build_dcn(n_fields: int, n_numeric: int, dim: int, cross_layers: int, hidden: list[int]) -> Any:
    """DCN-v2: ``x_{l+1} = x0 * (W x_l + b) + x_l`` cross layers beside an MLP, one logit out."""
    import torch
    from torch import nn

    class DCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(BUCKETS, dim, sparse=True)  # only touched rows get updates
            nn.init.normal_(self.embedding.weight, std=0.01)
            width = n_fields * dim + n_numeric
            self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cross_layers))
            layers: list[nn.Module] = []
            prev = width
            for h in hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            self.deep = nn.Sequential(*layers)
            self.head = nn.Linear(width + prev, 1)
            self.wide = nn.Embedding(BUCKETS, 1, sparse=True)  # first-order weight per field value
            nn.init.zeros_(self.wide.weight)

        def forward(self, ids: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
            x0 = torch.cat([self.embedding(ids).flatten(1), num], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x
            wide = self.wide(ids).sum(dim=(1, 2))
            return self.head(torch.cat([x, self.deep(x0)], dim=1)).squeeze(1) + wide

    return DCN()


def train_dcn(train: pd.DataFrame, valid: pd.DataFrame, prior: float, params: dict[str, Any],
              seed: int) -> ClickModel:
    """Train the DCN with Adam and early stopping on the validation day's log loss."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ids, num = encode(train, prior)
    y = torch.from_numpy(train["clicked"].to_numpy(np.float32))
    vy = valid["clicked"].to_numpy()
    net = build_dcn(ids.shape[1], num.shape[1], params["embedding_dim"], params["cross_layers"], params["hidden"])
    sparse = [net.embedding.weight, net.wide.weight]
    sparse_opt = torch.optim.SparseAdam(sparse, lr=params["lr"])
    dense_opt = torch.optim.Adam([p for p in net.parameters() if all(p is not q for q in sparse)],
                                 lr=params["lr"], weight_decay=params["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tids, tnum = torch.from_numpy(ids), torch.from_numpy(num)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, patience = float("inf"), None, 0
    model = ClickModel("dcn", prior, net)
    for _ in range(params["epochs"]):
        net.train()
        for batch in torch.randperm(len(y), generator=gen).split(params["batch_size"]):
            sparse_opt.zero_grad()
            dense_opt.zero_grad()
            emb = net.embedding(tids[batch])  # L2 on the rows this batch touched: SparseAdam has no decay
            loss = loss_fn(net(tids[batch], tnum[batch]), y[batch]) + params["embedding_l2"] * emb.pow(2).sum() / len(batch)
            loss.backward()
            sparse_opt.step()
            dense_opt.step()
        net.eval()
        p = np.clip(model.raw(valid), 1e-7, 1 - 1e-7)
        vloss = float(-np.mean(vy * np.log(p) + (1 - vy) * np.log(1 - p)))
        if vloss < best - 1e-5:
            best, patience = vloss, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            patience += 1
            if patience >= 2:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    model.calibration = Platt().fit(model.raw(valid), vy)
    return model
