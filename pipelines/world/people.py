"""People you may know: friend requests on the shared social graph, and the true chance a pair connects.

The friendships are the shared graph's (``pipelines.world.social``): every friendship that forms is an
accepted friend request (sent by one of the two, at the time it formed). Beside them, users send requests
that are never accepted: drawn by the same mechanisms as real initiations on the graph of the window's
start, most are ignored and some blocked (a blocked pair is never to be recommended again).

The oracle: a pair (u, v) connects when an initiation of u picks v or one of v picks u. With the
initiation rates and ``SocialGraph.partner_probabilities`` (exact on the graph of a moment), the chance
it connects within ``days`` is ``1 - exp(-days * DAILY * (r_u p_u(v) + r_v p_v(u)))`` (the graph's own
growth during those days ignored).

Drift: a new school cohort. ``drift`` enrols ``COHORT_SHARE * drift`` of the users (from every city: an
online school) in one new school at the window's start, and they befriend each other within the window
(``COHORT_FRIENDS * drift`` new friendships each, on average): degrees, mutual friends, same-school and
cross-city pairs move.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from pipelines.world.population import EPOCH, World
from pipelines.world.social import DAILY_INITIATIONS, NEW_USER_BOOST, NEW_USER_DAYS

UNACCEPTED_SHARE = 0.4
"""Requests never accepted, per accepted one."""
BLOCKED_SHARE = 0.1
"""Of the unaccepted requests, the share the recipient blocked."""
COHORT_SHARE = 0.1
COHORT_FRIENDS = 8.0
NEW_SCHOOL = 10**7
"""Where the drifted cohort's new school ids start (far above any simulated school)."""


class PeopleWorld(World):
    """The shared users, homes and friendships, and the friend requests around them."""

    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
        """The tables of days ``[start_day, start_day + n_days)``; day 0 also brings the graph before it."""
        end_day = start_day + n_days
        if end_day > self.social.horizon_days:
            raise ValueError(f"the social graph grows to day {self.social.horizon_days}; window ends at day {end_day}")
        start, end = EPOCH + pd.Timedelta(days=start_day), EPOCH + pd.Timedelta(days=end_day)
        users = self.population.users
        homes = self.homes.table(users["user_id"].to_numpy())
        groups = homes[["user_id", "city", "school_id", "workplace_id"]].assign(since_ts=users["signup_ts"])
        if start_day > 0:  # a later window brings the users who signed up in it
            groups = groups[(groups["since_ts"] >= start) & (groups["since_ts"] < end)]
        edges = self.social.between(None if start_day == 0 else start, end)
        if drift > 0:
            moved, burst = self._cohort(start_day, n_days, drift, homes, edges)
            groups = pd.concat([groups, moved], ignore_index=True)
            edges = pd.concat([edges, burst]).sort_values("created_ts", kind="stable")
            edges = edges.drop_duplicates(["user_id", "friend_id"]).reset_index(drop=True)
        requests = self._requests(edges, start_day, n_days)
        groups = groups[["user_id", "since_ts", "city", "school_id", "workplace_id"]].reset_index(drop=True)
        return {"users": self.public_users(), "affiliations": groups, "friendships": edges,
                "friend_requests": requests}

    def _requests(self, edges: pd.DataFrame, start_day: int, n_days: int) -> pd.DataFrame:
        """Accepted requests (the window's friendships) and unaccepted ones, within the window's days.

        The graph before day 0 came with no request log, so a history window's requests start at day 0.
        """
        rng = np.random.default_rng([self.seed, 301, start_day, n_days])
        start = EPOCH + pd.Timedelta(days=start_day)
        acc = edges[edges["created_ts"] >= start]
        flip = rng.random(len(acc)) < 0.5
        a, b = acc["user_id"].to_numpy(), acc["friend_id"].to_numpy()
        accepted = pd.DataFrame({"event_timestamp": acc["created_ts"].to_numpy(), "sender_id": np.where(flip, b, a),
                                 "recipient_id": np.where(flip, a, b), "status": "accepted"})
        adj = self.social.adjacency(start)
        alive = self.social.signup_day < start_day + n_days
        senders = rng.choice(np.flatnonzero(alive), size=rng.poisson(UNACCEPTED_SHARE * len(acc) + 1))
        partners = self.social.partners(senders, adj, rng, alive)
        ok = partners >= 0
        ok[ok] &= adj[senders[ok], partners[ok]].A1 == 0
        senders, partners = senders[ok], partners[ok]
        lo = np.maximum(start_day, np.maximum(self.social.signup_day[senders], self.social.signup_day[partners]))
        day = lo + (start_day + n_days - lo) * rng.random(len(senders))
        other = pd.DataFrame({"event_timestamp": EPOCH + pd.to_timedelta(np.round(day * 86_400), unit="s"),
                              "sender_id": senders + 1, "recipient_id": partners + 1,
                              "status": np.where(rng.random(len(senders)) < BLOCKED_SHARE, "blocked", "ignored")})
        ever = pd.MultiIndex.from_frame(self.social.between(None, EPOCH + pd.Timedelta(days=start_day + n_days))[
            ["user_id", "friend_id"]])
        pair = pd.MultiIndex.from_arrays([np.minimum(other["sender_id"], other["recipient_id"]),
                                          np.maximum(other["sender_id"], other["recipient_id"])])
        other = other[~pair.isin(ever) & ~pair.isin(pd.MultiIndex.from_frame(acc[["user_id", "friend_id"]]))]
        out = pd.concat([accepted, other.drop_duplicates(["sender_id", "recipient_id"])], ignore_index=True)
        out = out.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
        out.insert(0, "request_id", (start_day * 10**9 + np.arange(len(out))).astype(np.int64))
        return out

    def _cohort(self, start_day: int, n_days: int, drift: float, homes: pd.DataFrame, edges: pd.DataFrame
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A new school cohort: users enrol in one new school and befriend each other.

        Returns their new affiliation rows (valid from the window's start) and the window's new friendships.
        """
        rng = np.random.default_rng([self.seed, 302, start_day])
        pool = np.flatnonzero(self.social.signup_day < start_day)
        cohort = rng.choice(pool, size=max(2, round(COHORT_SHARE * drift * len(pool))), replace=False)
        moved = homes.iloc[cohort][["user_id", "city", "workplace_id"]].assign(
            school_id=NEW_SCHOOL + start_day, since_ts=EPOCH + pd.Timedelta(days=start_day))
        n = rng.poisson(COHORT_FRIENDS * drift * len(cohort) / 2)
        a, b = rng.choice(cohort, n), rng.choice(cohort, n)
        keep = a != b
        a, b = a[keep], b[keep]
        day = start_day + n_days * rng.random(len(a))
        burst = pd.DataFrame({"user_id": np.minimum(a, b) + 1, "friend_id": np.maximum(a, b) + 1,
                              "created_ts": EPOCH + pd.to_timedelta(np.round(day * 86_400), unit="s")})
        # never an existing friendship again (its first date is the one that counts)
        old = pd.MultiIndex.from_frame(self.social.between(None, EPOCH + pd.Timedelta(days=start_day + n_days))[
            ["user_id", "friend_id"]])
        burst = burst[~pd.MultiIndex.from_frame(burst[["user_id", "friend_id"]]).isin(old)]
        return moved, burst

    @cached_property
    def _rates(self) -> np.ndarray:
        return self.social.initiation_rate()

    def connect_probability(self, u: np.ndarray, v: np.ndarray, as_of: pd.Timestamp, days: float) -> np.ndarray:
        """The true chance that each pair of user ids (u, v), not yet friends, connects within ``days``."""
        adj = self.social.adjacency(as_of)
        i, j = np.asarray(u, np.int64) - 1, np.asarray(v, np.int64) - 1
        day = (as_of - EPOCH).total_seconds() / 86_400
        boosted = np.clip(self.social.signup_day + NEW_USER_DAYS - day, 0, days)  # days of the window still new
        boost = (1 + (NEW_USER_BOOST - 1) * boosted / days) * self._rates
        hazard = DAILY_INITIATIONS * (boost[i] * self.social.partner_probabilities(i, j, adj)
                                      + boost[j] * self.social.partner_probabilities(j, i, adj))
        return 1.0 - np.exp(-days * hazard)
