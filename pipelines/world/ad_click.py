"""The ad-click world: advertisers, campaigns and ads shown to the shared population.

The click probability of every impression is known:
``logit p = b0 + ad_quality + 0.8 * interest[user, category] + propensity[user]
+ position * screen(device) + device + daypart(category, hour)``: interests are shared by an age-gender
segment (a three-way interaction), position bias is steeper on small screens, and each category has
its hours (food at lunch, games at night). A linear model with hand-picked crosses misses part of this.
with ``b0`` solved so the platform CTR is a few percent. The drift knob moves the next window: a new
young cohort shows up, tastes shift, and fresh (cold-start) ads take a share of the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from pipelines.world.population import (
    COUNTRIES,
    EPOCH,
    N_INTERESTS,
    World,
    public_users,
    zipf_weights,
)

CATEGORIES = np.array(["apparel", "auto", "beauty", "finance", "food", "games", "health", "home",
                       "music", "sports", "tech", "travel"])
assert len(CATEGORIES) == N_INTERESTS
DEVICES = np.array(["mobile", "desktop", "tablet"])
POSITION_EFFECT = np.array([0.0, -0.35, -0.6, -0.8, -0.95])  # positions 1..5: position bias
DEVICE_EFFECT = np.array([0.1, -0.15, 0.0])
SCREEN_SLOPE = np.array([1.6, 0.5, 1.0])  # how much position bias each device's screen adds
TARGET_CTR = 0.03
ATTRIBUTION_SECONDS = 600
"""A click counts only if it happens within this many seconds of the impression (the book's ``t``)."""


@dataclass
class AdClickWorld(World):
    """A deterministic ad platform for one seed and scale."""

    @cached_property
    def ads(self) -> pd.DataFrame:
        """Ads with targeting and a latent quality; 10% are created during the window (cold start)."""
        rng = np.random.default_rng([self.seed, 2])
        n = self.scale.n_items
        n_adv = max(5, n // 20)
        advertiser = rng.integers(1, n_adv + 1, n)
        campaign = advertiser * 100 + rng.integers(0, 4, n)
        home_category = rng.integers(0, N_INTERESTS, n_adv + 1)
        category = np.where(rng.random(n) < 0.8, home_category[advertiser], rng.integers(0, N_INTERESTS, n))
        targeted = rng.random(n) < 0.3
        target_country = np.where(targeted, rng.choice(COUNTRIES, n), "ANY")
        min_age = np.where(rng.random(n) < 0.2, rng.choice([18, 21, 25], n), 18)
        max_age = np.where(rng.random(n) < 0.2, rng.choice([35, 45, 55], n), 99)
        new = rng.random(n) < 0.10
        created_day = np.where(new, rng.uniform(0, self.scale.days + 7, n), -rng.uniform(1, 120, n))
        return pd.DataFrame(
            {
                "ad_id": np.arange(1, n + 1, dtype=np.int64),
                "advertiser_id": advertiser.astype(np.int64),
                "campaign_id": campaign.astype(np.int64),
                "category": CATEGORIES[category],
                "target_country": target_country,
                "min_age": min_age.astype(np.int64),
                "max_age": max_age.astype(np.int64),
                "created_ts": EPOCH + pd.to_timedelta(np.round(created_day * 86_400), unit="s"),
                "quality": rng.normal(0.0, 0.5, n),
                "popularity": zipf_weights(n, 1.05, rng),
            }
        )

    @cached_property
    def daypart(self) -> np.ndarray:
        """Effect of each category in each four-hour block of the day."""
        return np.random.default_rng([self.seed, 6]).normal(0.0, 0.5, (N_INTERESTS, 6))

    @cached_property
    def bias(self) -> float:
        """The intercept that makes the expected CTR equal ``TARGET_CTR`` on undrifted traffic."""
        imp = self._draw(start_day=0, n_days=1, drift=0.0, rng=np.random.default_rng([self.seed, 3]), b0=0.0)
        logits = imp["_logit"].to_numpy()
        return float(brentq(lambda b: expit(logits + b).mean() - TARGET_CTR, -15, 5))

    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
        """All tables as the platform would log them for ``[start_day, start_day + n_days)``."""
        if not 0.0 <= drift <= 1.0:
            raise ValueError(f"drift must be in [0, 1], got {drift}")
        end = EPOCH + pd.Timedelta(days=start_day + n_days)
        rng = np.random.default_rng([self.seed, 4, start_day, n_days, int(drift * 1000)])
        imp = self._draw(start_day, n_days, drift, rng, self.bias)
        p = expit(imp.pop("_logit").to_numpy())
        clicked = rng.random(len(p)) < p
        imp["clicked"] = clicked.astype(np.int64)
        delay = np.minimum(rng.exponential(25.0, len(p)), ATTRIBUTION_SECONDS - 1)
        imp["click_delay_s"] = np.where(clicked, delay, np.nan)
        imp["p_click"] = p
        users = public_users(self.population)
        users = users[users["signup_ts"] < end].reset_index(drop=True)
        ads = self.ads[self.ads["created_ts"] < end].drop(columns=["quality", "popularity"]).reset_index(drop=True)
        return {"users": users, "ads": ads, "impressions": imp}

    def _draw(self, start_day: int, n_days: int, drift: float, rng: np.random.Generator, b0: float) -> pd.DataFrame:
        """Sample impressions (who saw which ad where and when) and their true click logits."""
        pop, ads = self.population, self.ads
        users = pop.users
        n = self.scale.events_per_day * n_days
        hour_p = np.array([1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 9, 8, 5, 3], float)
        hour = rng.choice(24, n, p=hour_p / hour_p.sum())
        day = start_day + rng.integers(0, n_days, n)
        ts = EPOCH + pd.to_timedelta(day * 86_400 + hour * 3600 + rng.integers(0, 3600, n), unit="s")

        # A drifted window brings a new young cohort from two fast-growing markets.
        weight = users["activity"].to_numpy().copy()
        cohort = (users["age"].to_numpy() < 30) & np.isin(users["country"].to_numpy(), ["NG", "ID"])
        weight[cohort] *= 1.0 + 20.0 * drift
        user_idx = _sample_eligible(rng, weight / weight.sum(), n,
                                    lambda idx, rows: users["signup_ts"].values[idx] <= ts.values[rows])

        age = users["age"].to_numpy()[user_idx]
        country = users["country"].to_numpy()[user_idx]
        popularity = ads["popularity"].to_numpy().copy()
        fresh = ads["created_ts"].values >= (EPOCH + pd.Timedelta(days=start_day)).tz_convert(None).to_datetime64()
        popularity[fresh] *= 1.0 + 30.0 * drift  # drift: new ads take a share of the traffic

        def eligible(idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
            tc = ads["target_country"].to_numpy()[idx]
            return (
                (ads["created_ts"].values[idx] <= ts.values[rows])
                & ((tc == "ANY") | (tc == country[rows]))
                & (ads["min_age"].to_numpy()[idx] <= age[rows])
                & (ads["max_age"].to_numpy()[idx] >= age[rows])
            )

        ad_idx = _sample_eligible(rng, popularity / popularity.sum(), n, eligible)
        keep = (user_idx >= 0) & (ad_idx >= 0)
        user_idx, ad_idx, hour, ts = user_idx[keep], ad_idx[keep], hour[keep], ts[keep]
        m = len(user_idx)
        position = rng.choice(5, m, p=[0.35, 0.25, 0.18, 0.12, 0.10])
        device = rng.choice(3, m, p=[0.65, 0.28, 0.07])

        category = np.searchsorted(CATEGORIES, ads["category"].to_numpy()[ad_idx])
        interests = pop.interests
        if drift > 0:  # tastes move: a fixed random direction, scaled by the drift knob
            shift = np.random.default_rng([self.seed, 5]).normal(0.0, 0.8, interests.shape)
            interests = interests + drift * shift
        logit = (
            b0
            + ads["quality"].to_numpy()[ad_idx]
            + 0.8 * interests[user_idx, category]
            + users["propensity"].to_numpy()[user_idx]
            + POSITION_EFFECT[position] * SCREEN_SLOPE[device]
            + DEVICE_EFFECT[device]
            + self.daypart[category, hour // 4]
        )
        out = pd.DataFrame(
            {
                "impression_id": np.zeros(m, dtype=np.int64),
                "event_timestamp": ts,
                "user_id": users["user_id"].to_numpy()[user_idx],
                "ad_id": ads["ad_id"].to_numpy()[ad_idx],
                "position": (position + 1).astype(np.int64),
                "device": DEVICES[device],
                "hour": hour.astype(np.int64),
                "_logit": logit,
            }
        ).sort_values("event_timestamp", kind="stable")
        # Ids are unique across windows: day-major, then order within the window.
        out["impression_id"] = start_day * 10_000_000 + np.arange(m, dtype=np.int64)
        return out.reset_index(drop=True)


def _sample_eligible(rng: np.random.Generator, p: np.ndarray, n: int, ok, rounds: int = 8) -> np.ndarray:
    """Draw ``n`` indices from ``p``, redrawing rows ``ok`` rejects; -1 where no eligible draw was found."""
    out = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(rounds):
        if len(todo) == 0:
            break
        draw = rng.choice(len(p), len(todo), p=p)
        good = ok(draw, todo)
        out[todo[good]] = draw[good]
        todo = todo[~good]
    return out
