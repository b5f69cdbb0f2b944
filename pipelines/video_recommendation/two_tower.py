"""The two-tower candidate generator: PyTorch user and item towers, the item vectors in an ANN index.

A module of its own because it is the one generator that needs torch: the other generators, the ranker
and the re-ranker load without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipelines.core.ann import AnnIndex, HnswParams
from pipelines.core.recsys.arrays import NAT, utc_ns
from pipelines.core.recsys.generators import CandidateGenerator
from pipelines.core.threads import torch_threads
from pipelines.video_recommendation.generators import (
    AGE_EDGES,
    DEMOGRAPHICS,
    UNKNOWN,
    Profile,
    positives,
    profiles,
    training_end_ns,
)

DURATION_EDGES = np.array([60, 180, 600, 1200, 2400])
"""Duration buckets in seconds: shorts, clips, episodes, long-form."""
VIDEO_AGE_EDGES = np.array([0.5, 1, 2, 4, 8, 16, 32, 64])
"""Video age buckets in days: exposure and novelty fade over a video's first days."""
MAX_TAGS = 5


def _vocab(values: pd.Series) -> dict[str, int]:
    """Index 1..n per distinct known value; 0 is reserved for unknown or unseen values."""
    return {v: i + 1 for i, v in enumerate(sorted(set(values.dropna().astype(str))))}


def _lookup(values: pd.Series, vocab: dict[str, int]) -> np.ndarray:
    return values.astype(str).map(vocab).fillna(0).to_numpy(np.int64)


class UserTower(nn.Module):
    """User id + demographics + mean embedding of the user's recent positive videos -> unit vector."""

    def __init__(self, n_users: int, n_items: int, sizes: dict[str, int], dim: int, hidden: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users + 1, dim)
        self.history = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.demo = nn.ModuleDict({c: nn.Embedding(sizes[c] + 1, 8) for c in DEMOGRAPHICS})
        self.mlp = nn.Sequential(nn.Linear(2 * dim + 8 * len(DEMOGRAPHICS), hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, user: torch.Tensor, demo: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        n_hist = (history > 0).sum(1, keepdim=True).clamp(min=1)
        parts = [self.user(user), self.history(history).sum(1) / n_hist]
        parts += [self.demo[c](demo[:, i]) for i, c in enumerate(DEMOGRAPHICS)]
        return nn.functional.normalize(self.mlp(torch.cat(parts, 1)), dim=1)


class ItemTower(nn.Module):
    """Video id + category + language + duration + age buckets + mean tag embedding -> unit vector, plus a bias.

    ``feats`` columns: category, language, duration bucket, age bucket (the video's age when scored).
    """

    def __init__(self, n_items: int, sizes: dict[str, int], dim: int, hidden: int) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim)
        self.category = nn.Embedding(sizes["category"] + 1, 8)
        self.language = nn.Embedding(sizes["video_language"] + 1, 8)
        self.duration = nn.Embedding(len(DURATION_EDGES) + 2, 4)
        self.age = nn.Embedding(len(VIDEO_AGE_EDGES) + 2, 4)
        self.tags = nn.EmbeddingBag(sizes["tags"] + 1, 8, mode="sum", padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim + 32, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.bias.weight)

    def forward(self, item: torch.Tensor, feats: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        n_tags = (tags > 0).sum(1, keepdim=True).clamp(min=1)
        x = torch.cat([self.item(item), self.category(feats[:, 0]), self.language(feats[:, 1]),
                       self.duration(feats[:, 2]), self.age(feats[:, 3]), self.tags(tags) / n_tags], 1)
        return nn.functional.normalize(self.mlp(x), dim=1)


@dataclass
class TwoTowerParams:
    """Two-tower training knobs (see ``TwoTower``)."""

    dim: int = 32
    hidden: int = 64
    temperature: float = 0.35
    epochs: int = 10
    batch_size: int = 512
    lr: float = 0.003
    weight_decay: float = 1e-6
    history: int = 20
    id_dropout: float = 0.3
    seed: int = 0
    threads: int = 1
    """Torch threads for training. One: on a shared 2-core machine two threads made small steps 10-20x
    slower (each op waits for a busy core); on an idle one they save about a third."""
    ann: HnswParams = field(default_factory=HnswParams)


class TwoTower(CandidateGenerator):
    """Two towers trained with in-batch sampled softmax and the log-popularity (logQ) correction.

    In-batch negatives are other users' positives, so popular videos are over-sampled as negatives;
    subtracting log q(video) from each logit undoes that bias (Yi et al., 2019). The score of a pair is
    ``u . v / temperature + bias(v)``: the index holds ``[v, bias]`` and a query is ``[u / temperature, 1]``,
    so the ANN inner product is exactly the model's score. User vectors of known users are precomputed
    from their history at fit time; an unknown user is embedded from demographics alone (the id and
    history embeddings are randomly dropped in training so this case is learned).
    """

    name = "two_tower"

    def __init__(self, params: TwoTowerParams | None = None) -> None:
        self.params = params or TwoTowerParams()

    # ----- encoding: the same for training, fit-time export and cold-start requests
    def _encode_users(self, profs: list[Profile]) -> np.ndarray:
        """(n, 4) demographic ids: age bucket + 1 and vocabulary indices, 0 where unknown or unseen."""
        vocabs = [self.vocab[c] for c in DEMOGRAPHICS[1:]]
        return np.array([[p[0] + 1, *(v.get(x, 0) for v, x in zip(vocabs, p[1:], strict=True))] for p in profs],
                        dtype=np.int64).reshape(len(profs), len(DEMOGRAPHICS))

    def _encode_items(self, videos: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) feature ids (the age column left 0: it depends on when the video is scored) and (n, 5) tags."""
        duration = pd.to_numeric(videos["duration_s"], errors="coerce").to_numpy(float)
        dur = np.where(np.isnan(duration), 0, np.searchsorted(DURATION_EDGES, np.nan_to_num(duration)) + 1)
        feats = np.stack([_lookup(videos["category"], self.vocab["category"]),
                          _lookup(videos["language"], self.vocab["video_language"]), dur, np.zeros(len(videos))],
                         1).astype(np.int64)
        tags = np.zeros((len(videos), MAX_TAGS), np.int64)
        for i, text in enumerate(videos["tags"].fillna("").astype(str)):
            idx = [self.vocab["tags"].get(t, 0) for t in text.split("|")[:MAX_TAGS] if t]
            tags[i, : len(idx)] = idx
        return feats, tags

    def _video_age(self, item: np.ndarray, now_ns: np.ndarray | int) -> np.ndarray:
        """Age bucket (1-based; 0 = unknown upload time) of catalog items (1-based) at ``now_ns``."""
        upload = self.upload_ns[item - 1]
        days = (now_ns - upload) / 86_400e9
        return np.where(upload == NAT, 0, np.searchsorted(VIDEO_AGE_EDGES, days) + 1)

    def _history(self, pos: pd.DataFrame, include_self: bool) -> np.ndarray:
        """(len(pos), H) catalog items (1-based, 0 = none) of each row's user's last positives, newest first.

        ``pos`` is sorted by user and time; training rows see only earlier positives, the export row (a
        user's last positive) includes itself.
        """
        h, first = self.params.history, 0 if include_self else 1
        item, user = pos["_item"].to_numpy(), pos["user_id"].to_numpy()
        out = np.zeros((len(pos), h), np.int64)
        for lag in range(first, h + first):
            prev = np.arange(len(pos)) - lag
            ok = prev >= 0
            ok[ok] &= user[prev[ok]] == user[ok]
            out[ok, lag - first] = item[prev[ok]]
        return out

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> TwoTower:
        p = self.params
        self._set_catalog(videos)
        videos = videos.sort_values("video_id").reset_index(drop=True)
        pos = positives(interactions)
        self.end_ns = training_end_ns(pos)
        pos = pos[pos["video_id"].isin(self.video_ids)].sort_values(["user_id", "event_timestamp"], kind="stable")
        pos["_item"] = np.searchsorted(self.video_ids, pos["video_id"].to_numpy()) + 1
        pos = pos.reset_index(drop=True)
        profs = profiles(users)
        profs |= {u: UNKNOWN for u in pos["user_id"].unique().tolist() if u not in profs}
        self.user_ids = np.sort(np.fromiter(profs, np.int64, len(profs)))
        self.vocab = {c: {v: i + 1 for i, v in enumerate(sorted({p[j] for p in profs.values()} - {""}))}
                      for j, c in enumerate(DEMOGRAPHICS) if j}
        self.vocab |= {"category": _vocab(videos["category"]), "video_language": _vocab(videos["language"]),
                       "tags": _vocab(pd.Series([t for s in videos["tags"].fillna("") for t in str(s).split("|")
                                                 if t]))}
        user_demo = self._encode_users([profs[u] for u in self.user_ids.tolist()])
        item_feats, item_tags = self._encode_items(videos)
        sizes = {name: len(vocab) for name, vocab in self.vocab.items()} | {"age_bucket": len(AGE_EDGES) + 1}
        torch.manual_seed(p.seed)
        self.user_tower = UserTower(len(self.user_ids), len(self.video_ids), sizes, p.dim, p.hidden)
        self.item_tower = ItemTower(len(self.video_ids), sizes, p.dim, p.hidden)

        item = pos["_item"].to_numpy()
        feats = item_feats[item - 1]
        feats[:, 3] = self._video_age(item, utc_ns(pos["event_timestamp"]))
        u_row = np.searchsorted(self.user_ids, pos["user_id"].to_numpy())
        examples = {"user": u_row + 1, "demo": user_demo[u_row], "history": self._history(pos, include_self=False),
                    "item": item, "feats": feats, "tags": item_tags[item - 1]}
        freq = np.bincount(item, minlength=len(self.video_ids) + 1).astype(float)
        log_q = torch.from_numpy(np.log((freq + 1.0) / (freq + 1.0).sum())).float()
        with torch_threads(p.threads):
            self._train({name: torch.from_numpy(a) for name, a in examples.items()}, log_q)
            item_feats[:, 3] = self._video_age(np.arange(1, len(self.video_ids) + 1), self.end_ns)
            self._export(pos, user_demo, item_feats, item_tags)
        return self

    def _train(self, t: dict[str, torch.Tensor], log_q: torch.Tensor) -> None:
        p = self.params
        params = list(self.user_tower.parameters()) + list(self.item_tower.parameters())
        opt = torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay)
        gen = torch.Generator().manual_seed(p.seed)
        n = len(t["item"])
        for _ in range(p.epochs):
            for batch in torch.randperm(n, generator=gen).split(p.batch_size):
                if len(batch) < 2:
                    continue
                item = t["item"][batch]
                # Drop the id (and sometimes the history) so the tower also learns to serve unknown users.
                drop = torch.rand(len(batch), generator=gen) < p.id_dropout
                user = torch.where(drop, 0, t["user"][batch])
                history = torch.where((drop & (torch.rand(len(batch), generator=gen) < 0.5))[:, None], 0,
                                      t["history"][batch])
                u = self.user_tower(user, t["demo"][batch], history)
                v = self.item_tower(item, t["feats"][batch], t["tags"][batch])
                logits = u @ v.T / p.temperature + self.item_tower.bias(item).T - log_q[item][None, :]
                same = (item[:, None] == item[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
                loss = nn.functional.cross_entropy(logits.masked_fill(same, -1e9), torch.arange(len(batch)))
                opt.zero_grad()
                loss.backward()
                opt.step()

    @torch.inference_mode()
    def _export(self, pos: pd.DataFrame, user_demo: np.ndarray, item_feats: np.ndarray, item_tags: np.ndarray) -> None:
        """Precompute serving state: every known user's query vector and every item's vector.

        Item vectors are computed at the end of training (their age feature as of then); ``build_index``
        (the flow's indexing step) puts them in the ANN index that ``recommend`` searches.
        """
        p = self.params
        self.user_tower.eval()
        self.item_tower.eval()
        items = torch.arange(1, len(self.video_ids) + 1)
        v = self.item_tower(items, torch.from_numpy(item_feats), torch.from_numpy(item_tags))
        self.item_vectors = torch.cat([v, self.item_tower.bias(items)], 1).numpy()
        self.index: AnnIndex | None = None
        history = np.zeros((len(self.user_ids), p.history), np.int64)
        last = pos.groupby("user_id").tail(1)
        history[np.searchsorted(self.user_ids, last["user_id"].to_numpy())] = self._history(
            pos, include_self=True)[last.index.to_numpy()]
        self.user_vectors = self._query(torch.arange(1, len(self.user_ids) + 1), user_demo, history)
        self.cold: dict[tuple[int, ...], np.ndarray] = {}

    def build_index(self, params: HnswParams | None = None) -> AnnIndex:
        """Index the item vectors of this fit (``params.ann`` unless given); ``recommend`` searches it."""
        self.index = AnnIndex.build(self.item_vectors, self.video_ids, params or self.params.ann)
        return self.index

    def _query(self, user: torch.Tensor, demo: np.ndarray, history: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            u = self.user_tower(user, torch.from_numpy(demo), torch.from_numpy(history))
        return torch.cat([u / self.params.temperature, torch.ones(len(u), 1)], 1).numpy()

    def query_vectors(self, user_ids: np.ndarray, users: pd.DataFrame | None = None) -> np.ndarray:
        """ANN query vector per user: precomputed for known users, from demographics for the others."""
        row = np.searchsorted(self.user_ids, user_ids).clip(0, len(self.user_ids) - 1)
        known = self.user_ids[row] == user_ids
        out = self.user_vectors[row].copy()
        if not known.all():
            new = profiles(users, user_ids[~known])
            demo = self._encode_users([new.get(u, UNKNOWN) for u in user_ids[~known].tolist()])
            keys = [tuple(d) for d in demo.tolist()]
            missing = sorted(set(keys) - self.cold.keys())
            if missing:  # one forward pass per distinct demographic profile, then cached
                with torch_threads(1):
                    vectors = self._query(torch.zeros(len(missing), dtype=torch.int64), np.array(missing),
                                          np.zeros((len(missing), self.params.history), np.int64))
                self.cold.update(zip(missing, vectors, strict=True))
            out[~known] = np.array([self.cold[k] for k in keys])
        return out

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        return self.query_vectors(user_ids, users) @ self.item_vectors.T

    def _candidates(self, user_ids: np.ndarray, n: int, users: pd.DataFrame | None, at: pd.Timestamp | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("TwoTower.recommend searches the ANN index: call build_index() after fit()")
        return self.index.search(self.query_vectors(user_ids, users), n)
