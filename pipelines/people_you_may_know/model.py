"""The link-prediction model: GraphSAGE node embeddings plus the pair heuristics, scored by one MLP.

Plain PyTorch sparse ops (no graph library): two GraphSAGE layers with the mean aggregator over the
snapshot's graph turn node features into embeddings; a pair (u, v) is scored from ``h_u * h_v``,
``|h_u - h_v|`` and the standardised pair features (mutual friends, Adamic-Adar, Jaccard, same
school/workplace/city, ...). On ogbl-collab Adamic-Adar beats a GNN that sees only node
embeddings, because an embedding cannot count common neighbours; giving the scorer the heuristics is the
simplest fix. The model is inductive: it scores any snapshot (the test one, the serving one) of a
growing graph, so nothing is tied to node ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.people_you_may_know.graph import PAIR_FEATURES, Snapshot, node_matrix


@dataclass
class Standardizer:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls(x.mean(axis=0), np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)


def build_net(node_dim: int, pair_dim: int, hidden: int) -> Any:
    import torch
    from torch import nn

    class SageLinkScorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sage1 = nn.Linear(2 * node_dim, hidden)
            self.sage2 = nn.Linear(2 * hidden, hidden)
            self.head = nn.Sequential(nn.Linear(2 * hidden + pair_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def embed(self, x: torch.Tensor, mean_adj: torch.Tensor, mean_x: torch.Tensor | None = None
                  ) -> torch.Tensor:
            """Two mean-aggregator layers; ``mean_x`` (= mean_adj @ x, no parameter in it) may be given."""
            mean_x = torch.sparse.mm(mean_adj, x) if mean_x is None else mean_x
            h = torch.relu(self.sage1(torch.cat([x, mean_x], dim=1)))
            return self.sage2(torch.cat([h, torch.sparse.mm(mean_adj, h)], dim=1))

        def score(self, h: torch.Tensor, u: torch.Tensor, v: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
            hu, hv = h[u], h[v]
            return self.head(torch.cat([hu * hv, (hu - hv).abs(), pair], dim=1)).squeeze(1)

    return SageLinkScorer()


def mean_adjacency(snap: Snapshot) -> Any:
    """D^-1 A as a torch sparse matrix: row u averages u's friends (zero row for a user without any)."""
    import torch

    coo = snap.adj.tocoo()
    deg = np.maximum(snap.degree, 1).astype(np.float32)
    values = (1.0 / deg[coo.row]).astype(np.float32)
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(values), coo.shape).coalesce()


@dataclass
class LinkModel:
    """What the registry stores: the network, the standardisers and, after the batch step, its list id."""

    net: Any
    nodes: Standardizer
    pairs: Standardizer
    as_of: pd.Timestamp
    """The end of the data of its run (lineage; the service's lists say their own snapshot)."""
    list_id: str | None = None
    """The precomputed lists the batch step wrote for this model (the service reads them)."""
    history: list[dict[str, float]] = field(default_factory=list)

    def predict(self, snap: Snapshot, features: pd.DataFrame) -> np.ndarray:
        """P(connect) (the scorer's sigmoid) for each pair of ``features`` (positions ``u``, ``v`` of ``snap``)."""
        import torch

        from pipelines.core.threads import torch_threads

        if not len(features):
            return np.zeros(0)
        with torch_threads(1), torch.inference_mode():
            self.net.eval()
            h = self.net.embed(torch.from_numpy(self.nodes(node_matrix(snap))), mean_adjacency(snap))
            logits = self.net.score(h, torch.from_numpy(features["u"].to_numpy(np.int64)),
                                    torch.from_numpy(features["v"].to_numpy(np.int64)),
                                    torch.from_numpy(self.pairs(features[PAIR_FEATURES].to_numpy(np.float32))))
            return torch.sigmoid(logits).numpy().astype(float)


@dataclass
class TrainingSet:
    """One training snapshot: its graph and node features, candidate pairs with labels, held-out marks."""

    snap: Snapshot
    pairs: pd.DataFrame
    y: np.ndarray
    valid: np.ndarray


def fit(sets: list[TrainingSet], params: dict[str, Any], seed: int, as_of: pd.Timestamp) -> LinkModel:
    """Adam on the class-weighted log loss over pair mini-batches, one snapshot per step (its full graph).

    Several snapshots give the model more label windows than one (a growing graph changes slowly, so
    older windows still teach). ``valid`` marks held-out pairs: every ``eval_every`` steps their ROC-AUC
    is checked and the best weights are kept. Positives are rare (a few per user among ~100 candidates),
    so they weigh ``sqrt(neg/pos)``: enough to be learnt from, not so much that scores lose their order.
    """
    import torch
    from sklearn.metrics import roc_auc_score

    from pipelines.core.threads import torch_threads
    from pipelines.core.training import EarlyStopping

    def tensors(t: TrainingSet) -> dict[str, Any]:
        x, adj = torch.from_numpy(model.nodes(node_matrix(t.snap))), mean_adjacency(t.snap)
        return {"x": x, "adj": adj, "mean_x": torch.sparse.mm(adj, x),  # the same every step: once
                "u": torch.from_numpy(t.pairs["u"].to_numpy(np.int64)),
                "v": torch.from_numpy(t.pairs["v"].to_numpy(np.int64)),
                "p": torch.from_numpy(model.pairs(t.pairs[PAIR_FEATURES].to_numpy(np.float32))),
                "y": torch.from_numpy(t.y.astype(np.float32)),
                "train": torch.from_numpy(np.flatnonzero(~t.valid)), "valid": torch.from_numpy(np.flatnonzero(t.valid))}

    def logits(d: dict[str, Any], rows: Any) -> Any:
        return net.score(net.embed(d["x"], d["adj"], d["mean_x"]), d["u"][rows], d["v"][rows], d["p"][rows])

    with torch_threads(1):
        torch.manual_seed(seed)
        train_pairs = np.vstack([t.pairs.loc[~t.valid, PAIR_FEATURES].to_numpy(np.float32) for t in sets])
        model = LinkModel(None, Standardizer.fit(np.vstack([node_matrix(t.snap) for t in sets])),
                          Standardizer.fit(train_pairs), as_of)
        net = build_net(len(model.nodes.mean), len(model.pairs.mean), params["hidden"])
        model.net = net
        data = [tensors(t) for t in sets]
        y_train = np.concatenate([t.y[~t.valid] for t in sets])
        y_valid = np.concatenate([t.y[t.valid] for t in sets])
        pos = max(float(y_train.sum()), 1.0)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(np.sqrt((len(y_train) - pos) / pos))))
        opt = torch.optim.Adam(net.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
        gen = torch.Generator().manual_seed(seed)
        stopper = EarlyStopping(params["patience"], 1e-4, lower_is_better=False)
        for step in range(1, params["steps"] + 1):
            net.train()
            d = data[step % len(data)]
            batch = d["train"][torch.randint(len(d["train"]), (params["batch_size"],), generator=gen)]
            opt.zero_grad()
            loss = loss_fn(logits(d, batch), d["y"][batch])
            loss.backward()
            opt.step()
            if step % params["eval_every"] == 0 or step == params["steps"]:
                net.eval()
                with torch.no_grad():
                    s = np.concatenate([logits(d, d["valid"]).numpy() for d in data])
                auc = float(roc_auc_score(y_valid, s)) if 0 < y_valid.sum() < len(y_valid) else 0.5
                model.history.append({"step": step, "loss": float(loss.detach()), "valid_roc_auc": auc})
                if stopper.check(auc, net):
                    break
        stopper.restore(net)
        return model
