"""people_you_may_know without the tools: snapshots never see their label window, candidates and the
fallback never suggest a friend, oneself or a blocked pair, the oracle ranks real friendships high, and
the edges file is mapped (repeats and self edges dropped and counted) or refused with one message."""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.people_you_may_know import graph
from pipelines.people_you_may_know.features import tables
from pipelines.people_you_may_know.pipeline import Cut, local_nodes
from pipelines.people_you_may_know.source import read_edges
from pipelines.world.people import PeopleWorld
from pipelines.world.population import SCALES


@pytest.fixture(scope="module")
def history() -> tuple[PeopleWorld, dict[str, pd.DataFrame]]:
    world = PeopleWorld(seed=5, scale=SCALES["tiny"])
    return world, world.window(0, SCALES["tiny"].days)


def _snapshot(t: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> graph.Snapshot:
    feats = tables(t["friendships"], t["friend_requests"], t["affiliations"], t["users"])
    nodes = local_nodes(feats, t["users"], t["friendships"], as_of)
    return graph.make_snapshot(t["friendships"], nodes, as_of, t["friend_requests"])


def test_no_edge_of_the_label_window_is_in_the_snapshot_graph(history: tuple[PeopleWorld, dict]) -> None:
    _, t = history
    cut = Cut.of(t["friendships"], 3)
    snap = _snapshot(t, cut.test)
    formed = graph.labels(snap, t["friendships"], cut.end)
    assert len(formed) > 50
    assert snap.adj[formed["u"].to_numpy(), formed["v"].to_numpy()].sum() == 0  # labels are not inputs
    coo = snap.adj.tocoo()
    e = t["friendships"].set_index(["user_id", "friend_id"])["created_ts"]
    lo, hi = np.minimum(snap.users[coo.row], snap.users[coo.col]), np.maximum(snap.users[coo.row], snap.users[coo.col])
    assert (e.loc[list(zip(lo, hi, strict=True))] < cut.test).all()  # every input edge is older than the cut
    assert snap.nodes["degree"].to_numpy().tolist() == snap.degree.tolist()  # Feast's count = the graph's


def test_pair_heuristics_equal_networkx_on_the_snapshot(history: tuple[PeopleWorld, dict]) -> None:
    """networkit computes Adamic-Adar for speed; networkx, the reference, must agree pair for pair."""
    _, t = history
    snap = _snapshot(t, Cut.of(t["friendships"], 3).end)
    pairs = graph.candidates(snap, np.arange(len(snap.users)), cap=30)
    feats = graph.pair_features(snap, pairs)
    g = nx.from_scipy_sparse_array(snap.adj)
    edges = list(zip(pairs["u"].tolist(), pairs["v"].tolist(), strict=True))
    expected = np.array([s for _, _, s in nx.adamic_adar_index(g, edges)])
    assert len(edges) > 1000 and (expected > 0).any()
    np.testing.assert_allclose(feats["adamic_adar"].to_numpy(), expected, rtol=1e-12, atol=1e-12)
    common = np.array([len(list(nx.common_neighbors(g, a, b))) for a, b in edges])
    assert feats["mutual_friends"].to_numpy().tolist() == common.tolist()


def test_candidates_are_never_a_friend_oneself_or_blocked(history: tuple[PeopleWorld, dict]) -> None:
    _, t = history
    snap = _snapshot(t, Cut.of(t["friendships"], 3).end)
    assert snap.blocked, "the simulator blocks some requests"
    pairs = graph.candidates(snap, np.arange(len(snap.users)), cap=30)
    u, v = pairs["u"].to_numpy(), pairs["v"].to_numpy()
    assert (u != v).all() and snap.adj[u, v].sum() == 0
    ids = set(zip(np.minimum(snap.users[u], snap.users[v]).tolist(), np.maximum(snap.users[u], snap.users[v]).tolist(),
                  strict=True))
    assert not ids & snap.blocked
    assert pairs.groupby("u").size().max() <= 30


def test_the_fallback_ranks_friends_of_friends_by_adamic_adar_and_skips_friends_and_blocked() -> None:
    edges = [(1, 2), (1, 3), (2, 4), (3, 4), (2, 5), (3, 6), (6, 7), (2, 3), (2, 8)]
    ranked = graph.friends_of_friends(edges, 1, exclude={5}, k=10)
    got = [c for c, _, _ in ranked]
    assert got[0] == 4 and set(got) == {4, 6, 8}  # 4 shares two friends; 5 blocked; 2, 3 are friends
    assert ranked[0][2] == 2
    assert graph.friends_of_friends(edges, 99, exclude=set(), k=5) == []


def test_the_oracle_gives_the_friendships_that_formed_a_higher_chance(history: tuple[PeopleWorld, dict]) -> None:
    world, t = history
    cut = Cut.of(t["friendships"], 3)
    snap = _snapshot(t, cut.test)
    formed = graph.labels(snap, t["friendships"], cut.end)
    pairs = graph.candidates(snap, formed["u"].unique(), cap=50)
    y = graph.with_labels(pairs, formed)
    p = world.connect_probability(snap.users[pairs["u"]], snap.users[pairs["v"]], cut.test, 3)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y, p) > 0.7


def test_a_drifted_window_brings_a_new_school_cohort_that_befriends_itself() -> None:
    world = PeopleWorld(seed=5, scale=SCALES["tiny"])
    calm, moved = world.window(10, 3), world.window(10, 3, drift=1.0)
    assert len(moved["friendships"]) > 1.5 * len(calm["friendships"])
    assert (moved["affiliations"]["school_id"] >= 10**7).sum() > 100
    assert calm["friendships"].merge(moved["friendships"]).shape[0] == len(calm["friendships"])  # calm edges kept


def test_an_edges_file_drops_and_counts_repeats_and_self_edges(tmp_path: Path) -> None:
    f = tmp_path / "edges.csv"
    pd.DataFrame({"src": [1, 2, 1, 3, 4, 2], "dst": [2, 1, 1, 1, 3, 3],
                  "timestamp": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z",
                                "2024-01-04T00:00:00Z", "2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z"]}
                 ).to_csv(f, index=False)
    nodes = tmp_path / "nodes.csv"
    pd.DataFrame({"user_id": [1, 2, 9], "school_id": [7, 7, 7], "age": [20, 21, 22]}).to_csv(nodes, index=False)
    t, counts = read_edges(f, nodes)
    assert counts == {"rows": 6, "self_edges": 1, "repeated_edges": 1, "friendships": 4}
    fr = t["friendships"]
    assert set(zip(fr["user_id"], fr["friend_id"], strict=True)) == {(1, 2), (1, 3), (3, 4), (2, 3)}
    assert fr.loc[(fr["user_id"] == 1) & (fr["friend_id"] == 2), "created_ts"].iloc[0] == pd.Timestamp(
        "2024-01-01", tz="UTC")  # the first time the pair connected
    assert t["users"]["user_id"].tolist() == [1, 2, 3, 4]  # node 9 has no edge: not a user
    groups = t["affiliations"].set_index("user_id")
    assert groups.loc[1, "school_id"] == 7 and groups.loc[3, "school_id"] == -1
    assert t["friend_requests"].empty


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"src": [1], "target": [2], "timestamp": [0]}), "lacks column(s) dst"),
    (pd.DataFrame({"src": ["a"], "dst": [2], "timestamp": [0]}), "column 'src' must hold integer ids"),
    (pd.DataFrame({"src": [1], "dst": [1], "timestamp": [0]}), "no edge is left once self edges are dropped"),
    (pd.DataFrame({"src": [1], "dst": [2], "timestamp": ["yesterday"]}), "values that are not timestamps"),
])
def test_a_bad_edges_file_gets_one_message_naming_the_problem(tmp_path: Path, frame: pd.DataFrame, message: str
                                                              ) -> None:
    f = tmp_path / "edges.csv"
    frame.to_csv(f, index=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_edges(f)
