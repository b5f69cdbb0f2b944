"""The shared home locations and social graph: one geography and one friendship graph for every case.

Event recommendation, people you may know and the news feed read the same friendships (DESIGN.md §4).
Both are drawn from their own seeded generators, so adding them changed nothing the population (and
every world built on it before) draws for a seed.

* **Homes**: each country has a few cities (real coordinates); a user lives in one of their country's
  cities (Zipf by size), their home within a few km of its centre. Young users have a school (a cohort of
  their city), working-age users a workplace in their city.
* **Friendships** form by a known process. Every user initiates friendships at a rate that grows with
  their activity; each initiation picks a partner by one of five mechanisms with fixed weights
  (``MECHANISMS``): a friend of a friend (a random friend, then a random friend of theirs: triadic
  closure), someone from the same school, the same workplace, the same city within a few years of age, or
  anyone on the platform; an unavailable mechanism (no friends yet, no school) picks from the city and age.
  Homophily by city, age and school/work and closure come from the mechanisms, not from a fitted model.
  Before day 0 the graph is grown in ``PAST_ROUNDS`` rounds (edges dated over the past year); from day 0
  it grows day by day, new users faster in their first week.

``partner_probability(u, v, as_of)`` is the exact chance that one initiation of ``u`` picks ``v`` on the
graph as of then: with the initiation rates it gives the true hazard of every pair (the oracle of link
prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from pipelines.world.population import COUNTRIES, EPOCH, Population

# (city, latitude, longitude) per country; the first city is the largest.
CITIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "US": (("new_york", 40.71, -74.01), ("los_angeles", 34.05, -118.24), ("chicago", 41.88, -87.63)),
    "IN": (("mumbai", 19.08, 72.88), ("delhi", 28.70, 77.10), ("bangalore", 12.97, 77.59)),
    "BR": (("sao_paulo", -23.55, -46.63), ("rio_de_janeiro", -22.91, -43.17), ("brasilia", -15.79, -47.88)),
    "GB": (("london", 51.51, -0.13), ("manchester", 53.48, -2.24), ("edinburgh", 55.95, -3.19)),
    "DE": (("berlin", 52.52, 13.40), ("munich", 48.14, 11.58), ("hamburg", 53.55, 9.99)),
    "FR": (("paris", 48.86, 2.35), ("lyon", 45.76, 4.84), ("marseille", 43.30, 5.37)),
    "MX": (("mexico_city", 19.43, -99.13), ("guadalajara", 20.66, -103.35), ("monterrey", 25.69, -100.32)),
    "JP": (("tokyo", 35.68, 139.69), ("osaka", 34.69, 135.50), ("nagoya", 35.18, 136.91)),
    "NG": (("lagos", 6.52, 3.38), ("abuja", 9.08, 7.40), ("kano", 12.00, 8.52)),
    "ID": (("jakarta", -6.21, 106.85), ("surabaya", -7.25, 112.75), ("bandung", -6.91, 107.61)),
}
assert set(CITIES) == set(COUNTRIES)
CITY_NAMES = np.array([c[0] for country in COUNTRIES for c in CITIES[country]])
CITY_COORDS = np.array([(c[1], c[2]) for country in COUNTRIES for c in CITIES[country]])
HOME_SPREAD_KM = 6.0
"""Standard deviation of a home's offset from its city centre, per axis."""
KM_PER_DEGREE = 111.2
EARTH_RADIUS_KM = 6371.0

MECHANISMS = ("friend_of_friend", "school", "workplace", "city_age", "anyone")
WEIGHTS = np.array([0.40, 0.20, 0.15, 0.20, 0.05])
"""Chance an initiation uses each mechanism; an unavailable one (no friends, no school) falls to ``anyone``."""
PAST_ROUNDS = 4
PAST_INITIATIONS = 8.0
"""Mean initiations per user before day 0 (an average user ends near 2x this many friends)."""
DAILY_INITIATIONS = 0.04
NEW_USER_BOOST = 8.0
NEW_USER_DAYS = 7
"""A user in their first week initiates this many times faster: new users find their friends quickly."""
CITY_AGE_YEARS = 4


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance; the one distance every case and the request-time features use."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class Homes:
    """Where each user lives and studies or works (index i is user i of the population)."""

    city: np.ndarray  # index into CITY_NAMES
    lat: np.ndarray
    lon: np.ndarray
    school: np.ndarray  # group id, -1 for none
    workplace: np.ndarray  # group id, -1 for none

    def table(self, user_ids: np.ndarray) -> pd.DataFrame:
        """The public homes table (``pipelines.world.schema.HOMES``)."""
        return pd.DataFrame({"user_id": user_ids, "city": CITY_NAMES[self.city], "home_lat": self.lat,
                             "home_lon": self.lon, "school_id": self.school, "workplace_id": self.workplace})


def make_homes(pop: Population, seed: int) -> Homes:
    """Cities by country (Zipf by size), homes near the centre, schools by cohort, workplaces by city."""
    rng = np.random.default_rng([seed, 101])
    users = pop.users
    first_city = pd.Index(COUNTRIES).get_indexer(users["country"]) * 3  # CITY_NAMES is in COUNTRIES order
    city = first_city + rng.choice(3, size=pop.n, p=[0.6, 0.27, 0.13])
    lat = CITY_COORDS[city, 0] + rng.normal(0, HOME_SPREAD_KM / KM_PER_DEGREE, pop.n)
    lon = CITY_COORDS[city, 1] + rng.normal(0, HOME_SPREAD_KM / KM_PER_DEGREE, pop.n) / np.cos(
        np.radians(CITY_COORDS[city, 0]))
    age = users["age"].to_numpy()
    # A school is a cohort of a city (4 birth years, 3 schools each); a workplace one of ~n/40 of a city.
    school = np.where(age < 30, (city * 100 + age // 4) * 3 + rng.integers(0, 3, pop.n), -1)
    n_work = max(1, pop.n // (40 * len(CITY_NAMES)))
    workplace = np.where(age >= 22, city * n_work + rng.integers(0, n_work, pop.n), -1)
    return Homes(city=city, lat=lat, lon=lon, school=school, workplace=workplace)


class _Pools:
    """Users grouped by a key, to draw a uniform member of a user's group in one vectorised step."""

    def __init__(self, key: np.ndarray) -> None:
        self.key = key
        self.order = np.argsort(key, kind="stable")
        sorted_keys = key[self.order]
        self.groups, self.start, self.size = np.unique(sorted_keys, return_index=True, return_counts=True)

    def group_size(self, users: np.ndarray) -> np.ndarray:
        g = np.searchsorted(self.groups, self.key[users])
        return self.size[g]

    def draw(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = np.searchsorted(self.groups, self.key[users])
        return self.order[self.start[g] + (rng.random(len(users)) * self.size[g]).astype(np.int64)]


@dataclass
class SocialGraph:
    """The friendship graph of one population: every edge with the time it formed."""

    pop: Population
    homes: Homes
    seed: int
    horizon_days: int
    """Edges form day by day from day 0 up to here; later the graph stays as it is."""

    @cached_property
    def _age_key(self) -> np.ndarray:
        age = self.pop.users["age"].to_numpy()
        return self.homes.city * 1000 + age // CITY_AGE_YEARS

    @cached_property
    def _pools(self) -> dict[str, _Pools]:
        h = self.homes
        return {"school": _Pools(h.school), "workplace": _Pools(h.workplace), "city_age": _Pools(self._age_key)}

    @cached_property
    def signup_day(self) -> np.ndarray:
        return ((self.pop.users["signup_ts"] - EPOCH).dt.total_seconds() / 86_400).to_numpy()

    def initiation_rate(self) -> np.ndarray:
        activity = self.pop.users["activity"].to_numpy()
        return np.sqrt(activity / activity.mean())

    def partners(self, u: np.ndarray, adj: sparse.csr_matrix, rng: np.random.Generator, alive: np.ndarray
                  ) -> np.ndarray:
        """One partner per initiation of ``u`` by the mechanisms; -1 where none is possible."""
        mech = rng.choice(len(MECHANISMS), size=len(u), p=WEIGHTS)
        out = np.full(len(u), -1, dtype=np.int64)
        deg = np.diff(adj.indptr)
        fof = (mech == 0) & (deg[u] > 0)
        if fof.any():
            w = _random_neighbour(adj, u[fof], rng)
            has = deg[w] > 0
            out[np.flatnonzero(fof)[has]] = _random_neighbour(adj, w[has], rng)
        for m, name in enumerate(MECHANISMS[1:4], start=1):
            pools = self._pools[name]
            pick = (mech == m) & (pools.key[u] >= 0)
            pick[pick] &= pools.group_size(u[pick]) > 1
            out[pick] = pools.draw(u[pick], rng)
        city_age = self._pools["city_age"]
        rest = (out < 0) & (mech != 4) & (city_age.group_size(u) > 1)  # unavailable: someone of the city and age
        out[rest] = city_age.draw(u[rest], rng)
        rest = out < 0
        out[rest] = rng.integers(0, self.pop.n, int(rest.sum()))
        ok = (out != u) & alive[out]
        return np.where(ok, out, -1)

    @cached_property
    def edges(self) -> pd.DataFrame:
        """Every friendship ``(user_id < friend_id, created_ts)``, the first time a pair connected."""
        rng = np.random.default_rng([self.seed, 102])
        n, rate, signup = self.pop.n, self.initiation_rate(), self.signup_day
        src: list[np.ndarray] = []
        dst: list[np.ndarray] = []
        day: list[np.ndarray] = []
        adj = sparse.csr_matrix((n, n), dtype=np.int8)
        alive = signup < 0
        for r in range(PAST_ROUNDS):  # the graph before day 0, grown in rounds so closure sees earlier edges
            counts = rng.poisson(rate * alive * PAST_INITIATIONS / PAST_ROUNDS)
            u = np.repeat(np.arange(n), counts)
            v = self.partners(u, adj, rng, alive)
            keep = v >= 0
            u, v = u[keep], v[keep]
            lo = np.maximum(signup[u], signup[v])
            # dated within the round's slice of each pair's shared time on the platform, so rounds stay ordered
            when = lo + (-lo) * (r + rng.random(len(u))) / PAST_ROUNDS
            src.append(u), dst.append(v), day.append(when)
            adj = symmetric_adjacency(n, np.concatenate(src), np.concatenate(dst))
        for d in range(self.horizon_days):
            alive = signup < d + 1
            new = (signup >= d - NEW_USER_DAYS) & alive
            counts = rng.poisson(rate * alive * DAILY_INITIATIONS * np.where(new, NEW_USER_BOOST, 1.0))
            u = np.repeat(np.arange(n), counts)
            v = self.partners(u, adj, rng, alive)
            keep = v >= 0
            u, v = u[keep], v[keep]
            start = np.maximum(d, np.maximum(signup[u], signup[v]))
            src.append(u), dst.append(v), day.append(start + (d + 1 - start) * rng.random(len(u)))
            adj = symmetric_adjacency(n, np.concatenate(src), np.concatenate(dst))
        a, b, t = np.concatenate(src), np.concatenate(dst), np.concatenate(day)
        frame = pd.DataFrame({"user_id": np.minimum(a, b) + 1, "friend_id": np.maximum(a, b) + 1, "day": t})
        frame = frame.sort_values("day", kind="stable").drop_duplicates(["user_id", "friend_id"])
        frame["created_ts"] = EPOCH + pd.to_timedelta(np.round(frame["day"].to_numpy() * 86_400), unit="s")
        return frame.drop(columns="day").sort_values(["created_ts", "user_id"], ignore_index=True)

    def between(self, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.DataFrame:
        """Edges formed in ``[start, end)`` (``start=None``: since the beginning)."""
        t = self.edges["created_ts"]
        keep = t < end if start is None else (t >= start) & (t < end)
        return self.edges[keep].reset_index(drop=True)

    def adjacency(self, as_of: pd.Timestamp) -> sparse.csr_matrix:
        """Symmetric 0/1 adjacency (user index = user_id - 1) of the friendships formed before ``as_of``."""
        e = self.between(None, as_of)
        return symmetric_adjacency(self.pop.n, e["user_id"].to_numpy() - 1, e["friend_id"].to_numpy() - 1)

    def partner_probability(self, u: int, v: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
        """P(one initiation of user index ``u`` picks each user index in ``v``), on the graph as of ``as_of``."""
        v = np.asarray(v, dtype=np.int64)
        return self.partner_probabilities(np.full(len(v), u), v, self.adjacency(as_of))

    def partner_probabilities(self, u: np.ndarray, v: np.ndarray, adj: sparse.csr_matrix) -> np.ndarray:
        """P(one initiation of user index ``u[i]`` picks ``v[i]``), per pair, on the graph ``adj``.

        The mechanisms' mixture, exactly: friend of friend = sum over common friends w of 1/deg(u)/deg(w);
        a group mechanism = 1/group size. Draws of oneself or of a user not yet signed up are dropped, so a
        pair's chance is this times (1 - the rare dropped share).
        """
        u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
        deg = np.diff(adj.indptr).astype(float)
        inv = sparse.diags(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0))
        two_hop = np.asarray((adj[u] @ inv).multiply(adj[v]).sum(axis=1)).ravel()
        has_friends = deg[u] > 0
        p = np.where(has_friends, WEIGHTS[0] * two_hop / np.maximum(deg[u], 1), 0.0)
        fallback = np.where(has_friends, 0.0, WEIGHTS[0])  # unavailable mechanisms go to city_age (or anyone)
        for m, name in enumerate(MECHANISMS[1:3], start=1):
            pools = self._pools[name]
            size = np.where(pools.key[u] >= 0, pools.group_size(u), 0)
            p += np.where(size > 1, WEIGHTS[m] * (pools.key[v] == pools.key[u]) / np.maximum(size, 1), 0.0)
            fallback += np.where(size > 1, 0.0, WEIGHTS[m])
        city_age = self._pools["city_age"]
        size = city_age.group_size(u)
        same = city_age.key[v] == city_age.key[u]
        p += np.where(size > 1, (WEIGHTS[3] + fallback) * same / np.maximum(size, 1), 0.0)
        anyone = WEIGHTS[4] + np.where(size > 1, 0.0, WEIGHTS[3] + fallback)
        return p + anyone / self.pop.n


def symmetric_adjacency(n: int, a: np.ndarray, b: np.ndarray) -> sparse.csr_matrix:
    """0/1 adjacency of the undirected edges (a[i], b[i]) over n nodes; every graph of the kit is built here."""
    m = sparse.coo_matrix((np.ones(2 * len(a), dtype=np.int8), (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    m.data[:] = 1  # repeated pairs count once
    return m


def _random_neighbour(adj: sparse.csr_matrix, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    deg = adj.indptr[u + 1] - adj.indptr[u]
    return adj.indices[adj.indptr[u] + (rng.random(len(u)) * deg).astype(np.int64)]
