"""The events world: hosts create events a few days before they start, an events feed shows them, users register.

Every event is new: it is created 2-10 days before it starts and nobody has seen it before, so a
recommender can only know it by its attributes, its host and the early registrations (cold start by
construction). Every label is drawn from a known model:

* The feed (the logging policy) shows a session up to ``SLATE`` upcoming events within ``FEED_RADIUS_KM``
  of where the user is, not full and not registered by them, drawn with a mild popularity tilt, in random
  order (so position effects are measurable and not confounded with quality).
* For the impression of event e at position k, as of the start of the day:
  ``logit = BIAS + taste . category + host quality - distance term - |log(hours until start / 72)| / 4
  + day/hour fit (the user's latent slot preference) - price above the user's budget + 0.7 log1p(friends
  registered) + 0.8 [invited by a friend] + 0.6 log1p(past registrations with the host) + propensity``;
  ``p_register = sigmoid(logit) * k ** -POSITION_EXPONENT`` is exact and exposed (the oracle).
* A registration invites each friend with probability ``INVITE_RATE``. Friends registered, invitations,
  host loyalty and event fill count from the first midnight after they happened, exactly as the case's
  feature tables count them, so the features the model reads are the ones the world used.

The drift knob moves the windows from ``start_day`` on: prices rise (up to x2.5) and an emerging
category is created and liked more. Homes and friendships are the shared world's (``social``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.special import expit

from pipelines.world.population import EPOCH, World
from pipelines.world.social import CITY_COORDS, KM_PER_DEGREE, haversine_km

CATEGORIES = np.array(["music", "sports", "tech", "food", "arts", "outdoors", "business", "gaming",
                       "fitness", "community"])
"""Category i loads on latent interest dimension i of the shared population."""
EMERGING = "gaming"
SLOTS = ("weekday_day", "weekday_evening", "weekend_day", "weekend_evening")
SLATE = 10
FEED_RADIUS_KM = 60.0
SESSION_SPREAD_KM = 2.0
POSITION_EXPONENT = 0.4
INVITE_RATE = 0.15
BIAS = -2.2


def slot_of(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """The day/hour slot (index into ``SLOTS``) of each start time: weekend or not, evening (18h+) or not."""
    t = pd.DatetimeIndex(ts)
    return (2 * np.asarray(t.dayofweek >= 5) + np.asarray(t.hour >= 18)).astype(np.int64)


def position_bias(position: np.ndarray) -> np.ndarray:
    """How much less likely a registration is at ``position`` than at the top of the feed."""
    return np.asarray(position, float) ** -POSITION_EXPONENT


@dataclass(frozen=True)
class _Events:
    frame: pd.DataFrame  # the public events table, event_id = index + 1
    city: np.ndarray
    quality: np.ndarray  # host quality + own quality
    created_day: np.ndarray
    start_day: np.ndarray
    slot: np.ndarray
    log_price: np.ndarray  # NaN for free events
    category: np.ndarray


class _Counts:
    """Counts per integer key, updated in batches, looked up vectorised (sorted keys + searchsorted)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, keys: np.ndarray) -> None:
        keys, counts = np.unique(np.r_[self.keys, keys], return_counts=True)
        old = np.isin(keys, self.keys)
        merged = counts.copy()
        merged[old] = self.get(keys[old]) + counts[old] - 1
        self.keys, self.counts = keys, merged

    def get(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.zeros(np.shape(keys), dtype=np.int64)
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, self.counts[i], 0)


class EventWorld(World):
    """Hosts, events and the events feed on the shared population, its homes and its friendships."""

    @cached_property
    def _latent(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 201])
        n = self.population.n
        return {"slot_pref": rng.dirichlet(np.full(len(SLOTS), 0.8), n),
                "budget": rng.normal(np.log(18.0), 0.7, n),
                "distance_km": np.exp(rng.normal(np.log(6.0), 0.5, n))}

    @property
    def horizon_days(self) -> int:
        return self.social.horizon_days

    def _events(self, drift_from: int, drift: float) -> _Events:
        """Every event up to the horizon; events created from ``drift_from`` on carry the drift."""
        rng = np.random.default_rng([self.seed, 202])
        homes = self.homes
        n_hosts = max(20, self.scale.n_items // 8)
        city_weight = np.bincount(homes.city, minlength=len(CITY_COORDS)) + 1.0
        host_city = rng.choice(len(CITY_COORDS), n_hosts, p=city_weight / city_weight.sum())
        host_category = rng.integers(0, len(CATEGORIES), n_hosts)
        host_quality = rng.normal(0.0, 0.5, n_hosts)
        host_rate = rng.lognormal(0.0, 0.8, n_hosts)
        per_day = self.scale.n_items / 7.0
        n = rng.poisson(per_day * self.horizon_days)
        created_day = np.sort(rng.uniform(0, self.horizon_days, n))
        host = rng.choice(n_hosts, n, p=host_rate / host_rate.sum())
        category = np.where(rng.random(n) < 0.7, host_category[host], rng.integers(0, len(CATEGORIES), n))
        shifted = (created_day >= drift_from) & (rng.random(n) < 0.4 * drift)
        category = np.where(shifted, int(np.flatnonzero(CATEGORIES == EMERGING)[0]), category)
        start_date = EPOCH + pd.to_timedelta(np.floor(created_day + rng.uniform(2, 10, n)), unit="D")
        weekend = start_date.dayofweek >= 5
        evening = rng.random(n) < np.where(weekend, 0.5, 0.65)
        hour = np.where(evening, rng.integers(18, 22, n), rng.integers(9, 17, n))
        start_ts = start_date + pd.to_timedelta(hour * 60 + rng.choice([0, 30], n), unit="min")
        free = rng.random(n) < 0.45
        price = np.round(np.exp(rng.normal(np.log(20.0), 0.7, n)) * np.where(created_day >= drift_from,
                                                                              1 + 1.5 * drift, 1.0))
        price = np.where(free, 0.0, np.maximum(price, 1.0))
        capacity = np.clip(np.exp(rng.normal(np.log(60.0), 0.8, n)), 10, 2000).astype(np.int64)
        city = host_city[host]
        spread = 10.0 / KM_PER_DEGREE
        lat = CITY_COORDS[city, 0] + rng.normal(0, spread, n)
        lon = CITY_COORDS[city, 1] + rng.normal(0, spread, n) / np.cos(np.radians(CITY_COORDS[city, 0]))
        created_ts = EPOCH + pd.to_timedelta(np.round(created_day * 86_400), unit="s")
        frame = pd.DataFrame({"event_id": np.arange(1, n + 1, dtype=np.int64), "created_ts": created_ts,
                              "start_ts": start_ts, "host_id": host.astype(np.int64) + 1,
                              "category": CATEGORIES[category], "price": price, "capacity": capacity,
                              "venue_lat": lat, "venue_lon": lon})
        start_day = ((start_ts - EPOCH).total_seconds() / 86_400).to_numpy()
        return _Events(frame=frame, city=city, quality=host_quality[host] + rng.normal(0, 0.3, n),
                       created_day=created_day, start_day=start_day, slot=slot_of(start_ts),
                       log_price=np.where(free, np.nan, np.log(np.maximum(price, 1.0))), category=category)

    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
        """The tables of days ``[start_day, start_day + n_days)``; the days before are replayed undrifted.

        Replaying from day 0 keeps every window consistent with the ones before it (fill, friends
        registered, loyalty), whichever windows were asked for.
        """
        end_day = start_day + n_days
        if end_day > self.horizon_days:
            raise ValueError(f"the events world runs to day {self.horizon_days}; window ends at day {end_day}")
        events = self._events(start_day, drift)
        logs = self._simulate(events, end_day, start_day, drift)
        start, end = EPOCH + pd.Timedelta(days=start_day), EPOCH + pd.Timedelta(days=end_day)
        imp, inv = logs["impressions"], logs["invitations"]
        imp = imp[(imp["event_timestamp"] >= start)].reset_index(drop=True)
        inv = inv[(inv["event_timestamp"] >= start)].reset_index(drop=True)
        created = events.frame["created_ts"]
        shown = events.frame["event_id"].isin(imp["event_id"])
        ev = events.frame[((created >= start) & (created < end)) | (shown & (created < end))]
        users = self.population.users
        homes = self.homes.table(users["user_id"].to_numpy())
        return {"users": self.public_users(), "homes": homes,
                "friendships": self.social.between(None if start_day == 0 else start, end),
                "events": ev.reset_index(drop=True), "invitations": inv, "impressions": imp}

    def _simulate(self, ev: _Events, end_day: int, drift_from: int, drift: float) -> dict[str, pd.DataFrame]:
        rng = np.random.default_rng([self.seed, 203, end_day, drift_from, round(drift * 1000)])
        pop, homes, lat = self.population, self.homes, self._latent
        n_users, n_events = pop.n, len(ev.frame)
        signup = ((pop.users["signup_ts"] - EPOCH).dt.total_seconds() / 86_400).to_numpy()
        activity = pop.users["activity"].to_numpy()
        interests = pop.interests[:, : len(CATEGORIES)]
        emerging = int(np.flatnonzero(CATEGORIES == EMERGING)[0])
        friends_reg, invited, loyalty, fill, registered = _Counts(), _Counts(), _Counts(), _Counts(), _Counts()
        n_hosts = int(ev.frame["host_id"].max())
        host = ev.frame["host_id"].to_numpy() - 1
        capacity = ev.frame["capacity"].to_numpy()
        lat_e, lon_e = ev.frame["venue_lat"].to_numpy(), ev.frame["venue_lon"].to_numpy()
        start_ts_days = ev.start_day
        sessions_per_day = max(1, self.scale.events_per_day // SLATE)
        imps, invs = [], []
        for day in range(end_day):
            drifted = drift if day >= drift_from else 0.0
            alive = signup < day + 1
            w = activity * alive
            u = rng.choice(n_users, sessions_per_day, p=w / w.sum())
            t = day + rng.uniform(np.maximum(0.0, signup[u] - day), 1.0)
            s_lat = homes.lat[u] + rng.normal(0, SESSION_SPREAD_KM / KM_PER_DEGREE, len(u))
            s_lon = homes.lon[u] + rng.normal(0, SESSION_SPREAD_KM / KM_PER_DEGREE, len(u)) / np.cos(
                np.radians(homes.lat[u]))
            live = np.flatnonzero((ev.created_day < day + 1) & (start_ts_days > day)
                                  & (fill.get(np.arange(n_events)) < capacity))
            rows = []
            for c in np.unique(homes.city[u]):
                s = np.flatnonzero(homes.city[u] == c)
                e = live[ev.city[live] == c]
                if not len(e):
                    continue
                ok = (ev.created_day[e][None, :] <= t[s][:, None]) & (start_ts_days[e][None, :] > t[s][:, None])
                ok &= haversine_km(s_lat[s][:, None], s_lon[s][:, None], lat_e[e][None, :],
                                   lon_e[e][None, :]) <= FEED_RADIUS_KM
                ok &= registered.get(u[s][:, None] * n_events + e[None, :]) == 0
                score = 0.5 * np.log1p(fill.get(e))[None, :] + rng.gumbel(size=ok.shape)
                score = np.where(ok, score, -np.inf)
                k = min(SLATE, len(e))
                top = np.argpartition(-score, k - 1, axis=1)[:, :k]
                valid = np.isfinite(np.take_along_axis(score, top, axis=1))
                si, j = np.nonzero(valid)
                rows.append(np.c_[s[si], e[top[si, j]]])
            if not rows:
                continue
            pair = np.concatenate(rows)
            pair = pair[np.lexsort((rng.random(len(pair)), pair[:, 0]))]  # random order within a slate
            si, e = pair[:, 0], pair[:, 1]
            position = np.concatenate([np.arange(1, c + 1) for c in np.unique(si, return_counts=True)[1]])
            uu = u[si]
            hours = (start_ts_days[e] - t[si]) * 24
            dist = haversine_km(s_lat[si], s_lon[si], lat_e[e], lon_e[e])
            taste = (interests[uu] * np.eye(len(CATEGORIES))[ev.category[e]]).sum(axis=1)
            taste = taste + drifted * (ev.category[e] == emerging)
            over_budget = np.where(np.isnan(ev.log_price[e]), 0.0, np.maximum(0.0, ev.log_price[e] - lat["budget"][uu]))
            logit = (BIAS + 1.3 * taste + ev.quality[e] - 0.9 * np.log1p(dist / lat["distance_km"][uu])
                     - np.abs(np.log(np.maximum(hours, 1.0) / 72.0)) / 4
                     + 0.8 * np.log(len(SLOTS) * lat["slot_pref"][uu, ev.slot[e]] + 0.05)
                     - 1.2 * over_budget - 0.2 * ~np.isnan(ev.log_price[e])
                     + 0.7 * np.log1p(friends_reg.get(uu * n_events + e))
                     + 0.8 * (invited.get(uu * n_events + e) > 0)
                     + 0.6 * np.log1p(loyalty.get(uu * n_hosts + host[e]))
                     + pop.users["propensity"].to_numpy()[uu])
            p = expit(logit) * position_bias(position)
            reg = rng.random(len(p)) < p
            code = uu * n_events + e  # one registration per user and event: a second session's is a no-op
            reg &= ~pd.Series(np.where(reg, code, -1 - np.arange(len(code)))).duplicated().to_numpy()
            ts = EPOCH + pd.to_timedelta(np.round(t[si] * 86_400), unit="s")
            imps.append(pd.DataFrame({"event_timestamp": ts, "user_id": uu + 1, "event_id": e + 1,
                                      "position": position, "user_lat": s_lat[si], "user_lon": s_lon[si],
                                      "registered": reg.astype(np.int64), "p_register": p}))
            # What the day's registrations change counts from the next midnight, as the features count it.
            ru, re = uu[reg], e[reg]
            registered.add(ru * n_events + re)
            fill.add(re)
            loyalty.add(ru * n_hosts + host[re])
            adj = self.social.adjacency(EPOCH + pd.Timedelta(days=day + 1))
            deg = np.diff(adj.indptr)
            friend = adj.indices[np.concatenate([np.arange(adj.indptr[x], adj.indptr[x + 1]) for x in ru])
                                 ] if len(ru) else np.zeros(0, np.int64)
            fe = np.repeat(re, deg[ru])
            friends_reg.add(friend * n_events + fe)
            send = rng.random(len(friend)) < INVITE_RATE
            invited.add(friend[send] * n_events + fe[send])
            reg_ts = np.repeat(ts[reg].to_numpy(), deg[ru])
            invs.append(pd.DataFrame({"event_timestamp": reg_ts[send], "inviter_id": np.repeat(ru, deg[ru])[send] + 1,
                                      "invitee_id": friend[send] + 1, "event_id": fe[send] + 1}))
        impressions = pd.concat(imps, ignore_index=True).sort_values("event_timestamp", kind="stable",
                                                                       ignore_index=True)
        impressions.insert(0, "impression_id", _ids(impressions, ["user_id", "event_id", "event_timestamp"]))
        invitations = pd.concat(invs, ignore_index=True)
        invitations.insert(0, "invitation_id", _ids(invitations, ["inviter_id", "invitee_id", "event_id"]))
        return {"impressions": impressions, "invitations": invitations}


def _ids(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Ids from the row's content: the same row in two windows is one row."""
    return (pd.util.hash_pandas_object(frame[cols], index=False).to_numpy() >> np.uint64(1)).astype(np.int64)
