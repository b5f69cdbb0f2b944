"""Graph snapshots, candidates and pair features: what every system of this case scores.

A ``Snapshot`` is the graph of the friendships formed before ``as_of`` with each user's node features as
of then; labels are the friendships formed in ``[as_of, as_of + Δ)``, so no label edge is in the input
graph. Candidates per user are friends of friends (2 hops) plus members of the same school or
workplace, capped per user (most mutual friends first). Adamic-Adar of a snapshot's candidates comes
from networkit (C++, ~0.5 us a pair; networkx's generator took ~4 us, most of the batch step), of one
user's ego graph in the service from networkx; mutual-friend counts from one sparse product.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse

from pipelines.core.files import UNKNOWN
from pipelines.world.social import symmetric_adjacency

if TYPE_CHECKING:  # imported where a snapshot is scored: the service's fallback needs only networkx
    import networkit as nk

PAIR_FEATURES = ["mutual_friends", "adamic_adar", "jaccard", "same_school",
                 "same_workplace", "same_city", "age_gap", "age_known", "log_degree_u", "log_degree_v",
                 "log_account_days_u", "log_account_days_v"]
"""What the scorer sees of a pair beside the two node embeddings: the heuristics go in (ogbl-collab's lesson)."""


@dataclass
class Snapshot:
    """The graph before ``as_of`` over ``users`` (index i = ``users[i]``) and their node features."""

    as_of: pd.Timestamp
    users: np.ndarray
    adj: sparse.csr_matrix
    nodes: pd.DataFrame  # NODE_NUMERIC + NODE_GROUPS + gender, row i = users[i]
    blocked: frozenset[tuple[int, int]] = frozenset()
    """User-id pairs (low, high) one of whom blocked the other: never candidates."""

    @cached_property
    def nk_graph(self) -> nk.Graph:
        """This graph in networkit (node i = position i); kept here, as its link indices only point to it."""
        import networkit as nk

        upper = sparse.triu(self.adj, 1).tocoo()
        return nk.GraphFromCoo((upper.row.astype(np.uint64), upper.col.astype(np.uint64)), n=len(self.users),
                               directed=False)

    @cached_property
    def links(self) -> nk.linkprediction.AdamicAdarIndex:
        """networkit's Adamic-Adar index over ``nk_graph``."""
        import networkit as nk

        return nk.linkprediction.AdamicAdarIndex(self.nk_graph)

    @cached_property
    def degree(self) -> np.ndarray:
        return np.diff(self.adj.indptr)

    def index(self, user_ids: np.ndarray) -> np.ndarray:
        """Positions of user ids in this snapshot, -1 for a user it does not have."""
        return _positions(self.users, user_ids)


def _positions(users: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    order = np.argsort(users)
    pos = np.minimum(np.searchsorted(users[order], user_ids), len(users) - 1)
    return np.where(users[order][pos] == user_ids, order[pos], -1)


def make_snapshot(friendships: pd.DataFrame, nodes: pd.DataFrame, as_of: pd.Timestamp,
                  requests: pd.DataFrame | None = None) -> Snapshot:
    """The snapshot of ``nodes`` (one row per user id, with node features as of ``as_of``)."""
    users = nodes["user_id"].to_numpy(np.int64)
    e = friendships[friendships["created_ts"] < as_of]
    a, b = _positions(users, e["user_id"].to_numpy()), _positions(users, e["friend_id"].to_numpy())
    ok = (a >= 0) & (b >= 0)
    blocked: frozenset[tuple[int, int]] = frozenset()
    if requests is not None and len(requests):
        r = requests[(requests["status"] == "blocked") & (requests["event_timestamp"] < as_of)]
        lo = np.minimum(r["sender_id"], r["recipient_id"]).to_numpy()
        hi = np.maximum(r["sender_id"], r["recipient_id"]).to_numpy()
        blocked = frozenset(zip(lo.tolist(), hi.tolist(), strict=True))
    return Snapshot(as_of, users, symmetric_adjacency(len(users), a[ok], b[ok]), nodes.reset_index(drop=True),
                    blocked)


def node_matrix(snap: Snapshot) -> np.ndarray:
    """Numeric node inputs (before standardisation): log counts, account age, age (known or not), gender."""
    n = snap.nodes
    age = pd.to_numeric(n["age"], errors="coerce").to_numpy(float)
    days = np.maximum((snap.as_of.timestamp() - n["signup_s"].to_numpy(float)) / 86_400, 0)
    gender = n["gender"].astype(str).to_numpy()
    return np.column_stack([np.log1p(n["degree"].to_numpy(float)), np.log1p(n["requests_sent"].to_numpy(float)),
                            np.log1p(days), np.nan_to_num(age, nan=30.0), ~np.isnan(age),
                            gender == "f", gender == "m", n["school_id"].to_numpy() >= 0,
                            n["workplace_id"].to_numpy() >= 0]).astype(np.float32)


def candidates(snap: Snapshot, who: np.ndarray, cap: int) -> pd.DataFrame:
    """Per user position in ``who``: friends of friends and same school/workplace, not friends, not blocked.

    At most ``cap`` per user, those with the most mutual friends first (ties: the lower position).
    Columns ``u``, ``v`` (positions) and ``mutual_friends``.
    """
    who = np.unique(np.asarray(who, np.int64))
    two = (snap.adj[who].astype(np.int32) @ snap.adj.astype(np.int32)).tocoo()
    parts = [pd.DataFrame({"u": who[two.row], "v": two.col.astype(np.int64), "mutual_friends": two.data})]
    for key in ("school_id", "workplace_id"):
        groups = snap.nodes[key].to_numpy()
        members = pd.DataFrame({"g": groups, "v": np.arange(len(groups))})
        members = members[members["g"] >= 0]
        mine = pd.DataFrame({"u": who, "g": groups[who]})
        pairs = mine[mine["g"] >= 0].merge(members, on="g")[["u", "v"]]
        parts.append(pairs.assign(mutual_friends=0))
    out = pd.concat(parts, ignore_index=True).groupby(["u", "v"], sort=False)["mutual_friends"].max().reset_index()
    u, v = out["u"].to_numpy(), out["v"].to_numpy()
    keep = (u != v) & (snap.adj[u, v].A1 == 0)
    if snap.blocked:
        ids = pd.MultiIndex.from_arrays([np.minimum(snap.users[u], snap.users[v]),
                                         np.maximum(snap.users[u], snap.users[v])])
        keep &= ~ids.isin(list(snap.blocked))
    out = out[keep]
    out = out.sort_values(["u", "mutual_friends", "v"], ascending=[True, False, True], kind="stable")
    return out.groupby("u", sort=False).head(cap).reset_index(drop=True)


def pair_features(snap: Snapshot, pairs: pd.DataFrame) -> pd.DataFrame:
    """``PAIR_FEATURES`` of each candidate pair (positions ``u``, ``v``); Adamic-Adar from networkit."""
    u, v = pairs["u"].to_numpy(), pairs["v"].to_numpy()
    deg, n = snap.degree, snap.nodes
    mutual = pairs["mutual_friends"].to_numpy(float) if "mutual_friends" in pairs else np.asarray(
        (snap.adj[u].multiply(snap.adj[v])).sum(axis=1)).ravel()
    age = pd.to_numeric(n["age"], errors="coerce").to_numpy(float)
    gap = np.abs(age[u] - age[v])
    days = np.maximum((snap.as_of.timestamp() - n["signup_s"].to_numpy(float)) / 86_400, 0)
    city = n["city"].astype(str).to_numpy()
    school, work = n["school_id"].to_numpy(), n["workplace_id"].to_numpy()
    out = pairs[["u", "v"]].copy()
    out["mutual_friends"] = mutual
    aa = snap.links.run  # one pair at a time keeps the pairs' order (``runOn`` returns them sorted)
    out["adamic_adar"] = np.fromiter((aa(a, b) for a, b in zip(u.tolist(), v.tolist(), strict=True)), float, len(u))
    out["jaccard"] = mutual / np.maximum(deg[u] + deg[v] - mutual, 1)
    out["same_school"] = ((school[u] == school[v]) & (school[u] >= 0)).astype(float)
    out["same_workplace"] = ((work[u] == work[v]) & (work[u] >= 0)).astype(float)
    out["same_city"] = ((city[u] == city[v]) & (city[u] != UNKNOWN)).astype(float)
    out["age_gap"] = np.nan_to_num(gap, nan=20.0)
    out["age_known"] = (~np.isnan(gap)).astype(float)
    out["log_degree_u"], out["log_degree_v"] = np.log1p(deg[u]), np.log1p(deg[v])
    out["log_account_days_u"], out["log_account_days_v"] = np.log1p(days[u]), np.log1p(days[v])
    return out


def labels(snap: Snapshot, friendships: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Friendships formed in ``[as_of, end)`` between users of the snapshot, as positions, both ways."""
    e = friendships[(friendships["created_ts"] >= snap.as_of) & (friendships["created_ts"] < end)]
    a, b = snap.index(e["user_id"].to_numpy()), snap.index(e["friend_id"].to_numpy())
    ok = (a >= 0) & (b >= 0)
    return pd.DataFrame({"u": np.r_[a[ok], b[ok]], "v": np.r_[b[ok], a[ok]]}).drop_duplicates()


def with_labels(pairs: pd.DataFrame, formed: pd.DataFrame) -> np.ndarray:
    """1 where the pair (u, v) formed in the label window."""
    key = pd.MultiIndex.from_frame(formed[["u", "v"]])
    return pd.MultiIndex.from_frame(pairs[["u", "v"]]).isin(key).astype(np.int8)



def friends_of_friends(edges: list[tuple[int, int]], user: int, exclude: set[int], k: int
                       ) -> list[tuple[int, float, int]]:
    """The on-demand ranking for a user without a precomputed list: 2-hop users by Adamic-Adar.

    ``edges`` must hold every edge of the user and of their friends (the ego graph of radius 2), so each
    common friend's degree is complete. Returns (candidate, Adamic-Adar, mutual friends), best first,
    ties by mutual friends then id; never the user, a friend or anyone in ``exclude``.
    """
    g = nx.Graph(edges)
    if user not in g:
        return []
    friends = set(g[user])
    two_hop = {w for f in friends for w in g[f]} - friends - {user} - exclude
    ranked = [(v, s, len(friends & set(g[v]))) for _, v, s in nx.adamic_adar_index(g, [(user, v) for v in two_hop])]
    ranked.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return ranked[:k]
