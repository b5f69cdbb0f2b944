"""The people-you-may-know bodies of train, precompute, evaluate and monitor scoring; the core runs them.

Time decides everything. With ``end`` the midnight after the last friendship and Δ = ``label_days``:
the model trains on the snapshot at ``end - 2Δ`` (graph and node features before it) with labels = the
friendships formed in the next Δ, and is tested on the snapshot at ``end - Δ`` with the last Δ as labels.
A snapshot's graph holds only edges formed before its time, so no label edge is ever an input.

Systems scored on the same candidates (friends of friends + same school/workplace, capped per user):
mutual friends, Adamic-Adar, the GNN and, on the simulator, the oracle (the true chance each pair
connects in the window). ROC-AUC is taken over the candidate pairs of the users who made a new friend in
the window; mAP@10 / recall@10 / Hits@50 over their ranked lists against every friendship they formed
(one outside the candidates is a miss for every system).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core import feast
from pipelines.core.case import Report, Run, Trained
from pipelines.core.plots import systems_chart
from pipelines.people_you_may_know import graph
from pipelines.people_you_may_know.features import NODE_GROUPS, NODE_NUMERIC, SERVICE
from pipelines.people_you_may_know.graph import Snapshot
from pipelines.people_you_may_know.model import LinkModel, TrainingSet
from pipelines.people_you_may_know.source import EDGE_COUNTS
from pipelines.people_you_may_know.store import ListStore

SYSTEMS = ("model", "adamic_adar", "mutual_friends", "oracle")
MONITORED = ["mutual_friends", "adamic_adar", "jaccard", "same_school", "same_city", "age_gap", "log_degree_u",
             "log_degree_v"]
MONITOR_ROWS = 20_000
STORE = "serving.sqlite"
"""The precomputed lists' table, under the case's work folder (``services/people_you_may_know`` reads it)."""


@dataclass(frozen=True)
class Cut:
    """The two snapshots of a run: train at ``train``, test at ``test``, the data ending at ``end``."""

    train: pd.Timestamp
    test: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def of(cls, friendships: pd.DataFrame, label_days: float) -> Cut:
        end = midnight_after(friendships["created_ts"])
        delta = pd.Timedelta(days=label_days)
        first = friendships["created_ts"].min()
        if end - 2 * delta <= first:
            raise ValueError(f"the friendships span {first} to {end}: too short for two label windows of "
                             f"label_days={label_days}; lower people_you_may_know.split.label_days")
        return cls(end - 2 * delta, end - delta, end)


def midnight_after(created: pd.Series) -> pd.Timestamp:
    """The end of a span of friendships: the midnight after the last one (snapshots sit on midnights)."""
    return created.max().floor("D") + pd.Timedelta(days=1)


def node_frame(nodes: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Node features with the explicit value of what is not known yet (no friends, no group, new user)."""
    out = nodes.copy()
    out["degree"] = out["degree"].fillna(0)
    out["requests_sent"] = out["requests_sent"].fillna(0)
    out["city"] = out["city"].fillna("unknown")
    for key in ("school_id", "workplace_id"):
        out[key] = out[key].fillna(-1).astype(np.int64)
    out["signup_s"] = out["signup_s"].fillna(as_of.timestamp())
    out["gender"] = out["gender"].fillna("u")
    return out


def _members(users: pd.DataFrame, friendships: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """The users of a snapshot: signed up before ``as_of`` or in a friendship formed before it."""
    return np.union1d(users.loc[users["signup_ts"] < as_of, "user_id"].to_numpy(np.int64),
                      friendships.loc[friendships["created_ts"] < as_of, ["user_id", "friend_id"]].to_numpy().ravel())


def snapshots(run: Run, times: list[pd.Timestamp], friendships: pd.DataFrame, requests: pd.DataFrame
              ) -> list[Snapshot]:
    """The snapshot at each time: its users' node features from Feast as of then (one point-in-time
    read for all of them), the graph of the friendships formed before it."""
    users = run.validated("users")
    members = {t: ids for t in times if len(ids := _members(users, friendships, t))}
    if len(members) < len(times):
        raise ValueError(f"no user is on the platform before {min(set(times) - set(members))}: the data start "
                         f"too late for these snapshots; lower split.train_snapshots or split.label_days")
    rows = pd.concat([pd.DataFrame({"user_id": ids, "event_timestamp": t}) for t, ids in members.items()])
    nodes = feast.historical(run.store, rows.reset_index(drop=True), SERVICE)
    at = np.repeat(np.arange(len(times)), [len(members[t]) for t in times])  # historical keeps the row order
    out = []
    for i, t in enumerate(times):
        frame = nodes[at == i].sort_values("user_id").reset_index(drop=True)
        frame = frame[["user_id", "gender", *NODE_NUMERIC, *NODE_GROUPS]]
        out.append(graph.make_snapshot(friendships, node_frame(frame, t), t, requests))
    return out


def snapshot(run: Run, as_of: pd.Timestamp, friendships: pd.DataFrame, requests: pd.DataFrame) -> Snapshot:
    return snapshots(run, [as_of], friendships, requests)[0]


def _pairs(snap: Snapshot, who: np.ndarray, cap: int, formed: pd.DataFrame | None = None,
           sample: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Candidate pairs of ``who`` with their pair features (and labels).

    ``sample``: at most that many pairs without a label per user, drawn before the (costly) pair features;
    every labelled pair is kept. Training needs the contrast, not every negative.
    """
    pairs = graph.candidates(snap, who, cap)
    if formed is not None:
        pairs["formed"] = graph.with_labels(pairs, formed)
        if sample is not None:
            rank = pd.Series(np.random.default_rng(seed).random(len(pairs))).groupby(pairs["u"].to_numpy()).rank()
            pairs = pairs[(pairs["formed"].to_numpy() == 1) | (rank.to_numpy() <= sample)].reset_index(drop=True)
    feats = graph.pair_features(snap, pairs)
    if formed is not None:
        feats["formed"] = pairs["formed"].to_numpy()
    return feats


def _held_out(snap: Snapshot, pairs: pd.DataFrame, share: float) -> np.ndarray:
    """A stable pseudo-random share of unordered pairs (by ids, so (u, v) and (v, u) fall together)."""
    u, v = snap.users[pairs["u"].to_numpy()], snap.users[pairs["v"].to_numpy()]
    key = np.minimum(u, v).astype(np.uint64) * np.uint64(1_000_003) + np.maximum(u, v).astype(np.uint64)
    return (key * np.uint64(2654435761) % np.uint64(2**32)) / 2**32 < share


def training_set(run: Run, snap: Snapshot, until: pd.Timestamp, fr: pd.DataFrame) -> TrainingSet | None:
    """The snapshot with labels up to ``until``, over the users who made a friend then.

    The same population as the test (whose users all made a friend): the scorer learns whom a user
    befriends, not who befriends anyone at all, which ranks nobody's list.
    """
    p = run.params
    formed = graph.labels(snap, fr, until)
    learners = formed["u"].unique()
    if not len(learners):
        return None
    pairs = _pairs(snap, learners, p.candidates.cap, formed, sample=p.gnn.negatives_per_user,
                   seed=p.seed + int(snap.as_of.timestamp()))
    return TrainingSet(snap, pairs, pairs["formed"].to_numpy(), _held_out(snap, pairs, p.gnn.valid_share))


def train(run: Run) -> Trained:
    """The train snapshots, their candidates and labels, the GNN scorer with early stopping on held-out pairs."""
    from pipelines.people_you_may_know.model import fit

    p = run.params
    fr, req = run.validated("friendships"), run.validated("friend_requests")
    cut = Cut.of(fr, p.split.label_days)
    delta = pd.Timedelta(days=p.split.label_days)
    snaps = snapshots(run, [cut.train - i * delta for i in range(p.split.train_snapshots)], fr, req)
    sets = [t for snap in snaps if (t := training_set(run, snap, snap.as_of + delta, fr)) is not None]
    if not sets or not any(t.y.any() for t in sets):
        raise ValueError(f"no candidate pair formed a friendship in the train window ({cut.train} + "
                         f"{p.split.label_days} days): more data or a longer label_days is needed")
    model = fit(sets, p.gnn.model_dump(), p.seed, cut.end)
    lineage = {"feature_service": SERVICE, "world": run.world.id, "batches": run.batches("friendships"),
               "snapshots": {"train": [str(t.snap.as_of) for t in sets], "test": str(cut.test), "end": str(cut.end)},
               "test_window": [str(cut.test), str(cut.end)],
               "rows": {"train_pairs": int(sum((~t.valid).sum() for t in sets)),
                        "valid_pairs": int(sum(t.valid.sum() for t in sets)),
                        "train_positives": int(sum(t.y.sum() for t in sets))},
               "training": model.history[-1] if model.history else {},
               "params": p.model_dump(mode="json")}
    counts = run.work(EDGE_COUNTS)
    if run.world.source == "file" and counts.exists():
        from pipelines.core.io import read_json

        lineage["edges_file"] = read_json(counts)
    return Trained(model, lineage)


def _scores(run: Run, model: LinkModel, snap: Snapshot, pairs: pd.DataFrame, days: float) -> dict[str, np.ndarray]:
    scores = {"model": model.predict(snap, pairs),
              "adamic_adar": pairs["adamic_adar"].to_numpy() + 1e-6 * pairs["mutual_friends"].to_numpy(),
              "mutual_friends": pairs["mutual_friends"].to_numpy() + 1e-3 * pairs["adamic_adar"].to_numpy()}
    if run.world.source == "simulator":
        from pipelines.people_you_may_know.source import world

        u, v = snap.users[pairs["u"].to_numpy()], snap.users[pairs["v"].to_numpy()]
        scores["oracle"] = world(run).connect_probability(u, v, snap.as_of, days)
    return scores


def _top(pairs: pd.DataFrame, score: np.ndarray, k: int) -> pd.DataFrame:
    """Each user's k best pairs by ``score`` (ties: the lower position), best first, with their ``rank``."""
    ranked = pairs.assign(score=score).sort_values(["u", "score", "v"], ascending=[True, False, True], kind="stable")
    top = ranked.groupby("u", sort=False).head(k)
    return top.assign(rank=top.groupby("u", sort=False).cumcount() + 1)


def _lists(pairs: pd.DataFrame, score: np.ndarray, k: int) -> dict[int, list[int]]:
    top = _top(pairs[["u", "v"]], score, k)
    return {int(u): g.tolist() for u, g in top.groupby("u", sort=False)["v"]}


def evaluate(run: Run, model: LinkModel) -> Report:
    """Link-prediction ROC-AUC and each user's list quality per system on the test snapshot."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipelines.core.ranking import ranking_report

    p = run.params
    fr, req = run.validated("friendships"), run.validated("friend_requests")
    cut = Cut.of(fr, p.split.label_days)
    snap, last = snapshots(run, [cut.test, cut.end], fr, req)
    formed = graph.labels(snap, fr, cut.end)
    who = formed["u"].unique()
    pairs = _pairs(snap, who, p.candidates.cap, formed)
    y = pairs["formed"].to_numpy()
    relevant = {int(u): g.tolist() for u, g in formed.groupby("u")["v"]}
    scores = _scores(run, model, snap, pairs, p.split.label_days)
    systems: dict[str, dict[str, float]] = {}
    both = 0 < y.sum() < len(y)  # a graph whose new friends are all outside the candidates has no AUC
    for name, s in scores.items():
        lists = _lists(pairs, s, max(p.k, 50))
        top = ranking_report(lists, relevant, p.k)
        hits = sum(len(set(lists.get(u, [])[:50]) & set(r)) for u, r in relevant.items())
        systems[name] = {"roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
                         "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
                         f"map@{p.k}": top["map@k"], f"ndcg@{p.k}": top["ndcg@k"], f"recall@{p.k}": top["recall@k"],
                         "hits@50": hits / sum(len(r) for r in relevant.values()), "users": int(top["users"])}
    k = p.k
    found = int(y.sum())
    out: dict[str, Any] = {
        "model": systems["model"], "baseline": systems["adamic_adar"], "systems": systems,
        "lift_over_adamic_adar": {m: systems["model"][m] / systems["adamic_adar"][m] - 1
                                  for m in ("roc_auc", f"map@{k}", f"recall@{k}", "hits@50")
                                  if systems["adamic_adar"][m] > 0},
        "coverage": {"test users": len(relevant), "users in the snapshot": len(snap.users),
                     "friendships formed": int(len(formed) // 2), "candidate pairs": len(pairs),
                     "formed pairs among candidates": found,
                     "candidate recall": found / max(len(formed), 1)},
        "snapshot": {"test": str(cut.test), "end": str(cut.end), "label_days": p.split.label_days},
        "scorer": "GraphSAGE (2 mean-aggregator layers) + heuristic pair features (mutual friends, Adamic-Adar, "
                  "Jaccard, same school/workplace/city, age gap, degrees) into one MLP"}
    fig, rows = systems_chart(systems, [s for s in SYSTEMS if s in systems],
                              ("roc_auc", f"map@{k}", f"recall@{k}", "hits@50"),
                              f"{run.case}: test window, {len(relevant):,} users")
    reference = monitored(run, model, last, _active(fr, cut.test, cut.end))
    return Report(out, plots={"systems": fig}, plot_data={"systems": rows}, reference=reference)


def _active(friendships: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    e = friendships[(friendships["created_ts"] >= start) & (friendships["created_ts"] < end)]
    return np.unique(e[["user_id", "friend_id"]].to_numpy())


def monitored(run: Run, model: LinkModel, snap: Snapshot, active: np.ndarray) -> pd.DataFrame:
    """The candidates of the users active in a window, on the graph at its end, scored: what Evidently compares."""
    who = snap.index(active)
    pairs = graph.candidates(snap, who[who >= 0], run.params.candidates.cap)
    if len(pairs) > MONITOR_ROWS:  # a fixed-size sample, drawn before the pair features are computed
        pairs = pairs.sample(MONITOR_ROWS, random_state=0).sort_values(["u", "v"], ignore_index=True)
    pairs = graph.pair_features(snap, pairs)
    return pairs[MONITORED].assign(prediction=model.predict(snap, pairs)).reset_index(drop=True)


def score_window(run: Run, model: LinkModel, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The next window's active users on the graph at its end, with node features from its own tables.

    The feature store holds the validated history only; the window's friendships, requests and new
    affiliations are not in it yet, so the same feature tables are built from history + window and read as
    of the window's end (what Feast's point-in-time join gives on them; a test checks the two agree).
    """
    from pipelines.people_you_may_know.features import tables

    def both(name: str) -> pd.DataFrame:
        return pd.concat([run.validated(name), window[name]], ignore_index=True)

    fr = both("friendships").drop_duplicates(["user_id", "friend_id"])
    end = midnight_after(window["friendships"]["created_ts"])
    users = both("users").drop_duplicates("user_id", keep="last")
    feature_tables = tables(fr, both("friend_requests"), both("affiliations"), users)
    snap = graph.make_snapshot(fr, local_nodes(feature_tables, users, fr, end), end, both("friend_requests"))
    start = window["friendships"]["created_ts"].min()
    return monitored(run, model, snap, _active(fr, start, end))


def local_nodes(feature_tables: dict[str, pd.DataFrame], users: pd.DataFrame, friendships: pd.DataFrame,
                as_of: pd.Timestamp) -> pd.DataFrame:
    """Each user's latest row of every feature table before ``as_of``: the point-in-time read, in pandas."""
    out = pd.DataFrame({"user_id": _members(users, friendships, as_of)}).merge(
        users[["user_id", "age", "gender"]], on="user_id", how="left")
    for frame in feature_tables.values():
        latest = frame[frame["event_timestamp"] <= as_of].sort_values("event_timestamp", kind="stable")
        latest = latest.drop_duplicates("user_id", keep="last").drop(columns="event_timestamp")
        out = out.merge(latest, on="user_id", how="left")
    return node_frame(out[["user_id", "gender", *NODE_NUMERIC, *NODE_GROUPS]], as_of)


def precompute(run: Run, model: LinkModel) -> dict[str, Any]:
    """The batch step: the top k for every active user on the newest snapshot, into the serving table."""
    import time

    t0 = time.perf_counter()
    p = run.params
    fr, req = run.validated("friendships"), run.validated("friend_requests")
    end = Cut.of(fr, p.split.label_days).end
    snap = snapshot(run, end, fr, req)
    since = end - pd.Timedelta(days=p.precompute.active_days)
    sent = req.loc[req["event_timestamp"] >= since, ["sender_id", "recipient_id"]].to_numpy().ravel()
    active = np.union1d(_active(fr, since, end), sent)
    who = snap.index(active)
    pairs = _pairs(snap, who[who >= 0], p.candidates.cap)
    score = model.predict(snap, pairs)
    top = _top(pairs[["u", "v", "mutual_friends"]], score, p.precompute.k)
    lists = pd.DataFrame({"user_id": snap.users[top["u"].to_numpy()], "rank": top["rank"].to_numpy(),
                          "candidate_id": snap.users[top["v"].to_numpy()], "score": top["score"].to_numpy(),
                          "mutual_friends": top["mutual_friends"].to_numpy()})
    model.list_id = uuid.uuid4().hex
    ListStore(run.work(STORE)).write(model.list_id, end, lists, fr[fr["created_ts"] < end], snap.blocked,
                                     p.precompute.keep_lists, protect=_champion_list(run))
    return {"list_id": model.list_id, "as_of": str(end), "active_users": len(active),
            "users_with_list": int(lists["user_id"].nunique()), "rows": len(lists),
            "seconds": round(time.perf_counter() - t0, 2)}


def _champion_list(run: Run) -> frozenset[str]:
    """The list the serving champion reads: never pruned, however many challengers come after it."""
    from pipelines.core import registry

    try:
        _, champion = registry.load_champion(run.case)
    except (LookupError, RuntimeError):  # none yet, or gone from the store
        return frozenset()
    return frozenset({champion.list_id}) if getattr(champion, "list_id", None) else frozenset()


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """A user with a precomputed list, and an inactive user with friends (the on-demand fallback)."""
    import httpx

    from pipelines.core.io import read_json
    from pipelines.core.registry import load

    model: LinkModel = load(read_json(run.work("challenger.json"))["challenger"])
    store = ListStore(run.work(STORE))
    out: dict[str, Any] = {}
    users = {"known": store.users_with_list(model.list_id, 1), "cold_start": store.users_without_list(model.list_id, 1)}
    for name, found in users.items():
        if not found:
            raise RuntimeError(f"the precomputed list {model.list_id} has no {name} user to ask for")
        user = found[0]
        k = min(5, run.params.serving.max_k)
        r = httpx.post(f"{url}/recommend", json={"user_id": user, "k": k}, timeout=30)
        r.raise_for_status()
        body = r.json()
        want = "precomputed" if name == "known" else "on_demand"
        if not body["people"] or body["source"] != want:
            raise RuntimeError(f"the people_you_may_know service answered the {name} user {user} with "
                               f"{r.text[:200]} (expected a non-empty {want} list)")
        out[name] = body["people"][:3]
    return out

