"""The shared user population: demographics, language, latent interests, activity and signup time."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipelines.world.social import Homes, SocialGraph

EPOCH = pd.Timestamp("2026-01-01", tz="UTC")
"""Day 0 of every simulated world; windows are counted in days from here."""

COUNTRIES = np.array(["US", "IN", "BR", "GB", "DE", "FR", "MX", "JP", "NG", "ID"])
LANGUAGE_OF = {"US": "en", "IN": "hi", "BR": "pt", "GB": "en", "DE": "de", "FR": "fr", "MX": "es",
               "JP": "ja", "NG": "en", "ID": "id"}
GENDERS = np.array(["f", "m", "u"])
AGE_BUCKETS = np.array([18, 25, 35, 45, 55])
N_INTERESTS = 12
"""Latent interest dimensions; case studies map their item categories onto them."""


@dataclass(frozen=True)
class Scale:
    """How big a world is; tiny for tests, small by default, large for benchmarks."""

    n_users: int
    n_items: int
    events_per_day: int
    days: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(n_users=2_000, n_items=150, events_per_day=10_000, days=10),
    "small": Scale(n_users=15_000, n_items=1_000, events_per_day=15_000, days=14),
    "large": Scale(n_users=150_000, n_items=8_000, events_per_day=150_000, days=14),
}


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like popularity over ``n`` items in random order (rank 1 is not always id 0)."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(w)
    return w / w.sum()


def age_bucket(age: np.ndarray) -> np.ndarray:
    """Index of the age bucket (0..4) each age falls in."""
    return np.searchsorted(AGE_BUCKETS, age, side="right") - 1


@dataclass(frozen=True)
class Population:
    """Users as a frame plus the latent parts no table shows (interest vectors, propensity)."""

    users: pd.DataFrame
    interests: np.ndarray  # (n_users, N_INTERESTS): the user's true taste
    segment_affinity: np.ndarray  # (5 age buckets, 3 genders, N_INTERESTS): shared by a segment

    @property
    def n(self) -> int:
        return len(self.users)


def make_population(n_users: int, seed: int, history_days: int = 365, window_days: int = 14) -> Population:
    """Draw the population: most users signed up before day 0, some during the window (cold start)."""
    rng = np.random.default_rng([seed, 1])
    country = rng.choice(COUNTRIES, size=n_users, p=zipf_weights(len(COUNTRIES), 1.1, rng))
    age = np.clip(rng.gamma(6.0, 5.5, size=n_users) + 13, 18, 80).astype(np.int64)
    gender = rng.choice(GENDERS, size=n_users, p=[0.48, 0.48, 0.04])
    # 8% of users sign up during the simulated window: they have no history when they first appear.
    new = rng.random(n_users) < 0.08
    signup_day = np.where(new, rng.uniform(0, window_days, n_users), -rng.uniform(1, history_days, n_users))
    signup_ts = EPOCH + pd.to_timedelta(np.round(signup_day * 86_400), unit="s")
    activity = rng.lognormal(0.0, 1.0, n_users)  # heavy-tailed: a few users make most events
    segment_affinity = rng.normal(0.0, 0.7, size=(len(AGE_BUCKETS), len(GENDERS), N_INTERESTS))
    g_idx = np.searchsorted(GENDERS, gender)  # GENDERS is sorted
    own = rng.normal(0.0, 0.15, size=(n_users, N_INTERESTS))
    interests = segment_affinity[age_bucket(age), g_idx] + own
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "signup_ts": signup_ts,
            "age": age,
            "gender": gender,
            "country": country,
            "language": [LANGUAGE_OF[c] for c in country],
            "activity": activity,
            "propensity": rng.normal(0.0, 0.15, n_users),
        }
    )
    return Population(users=users, interests=interests, segment_affinity=segment_affinity)


def public_users(pop: Population) -> pd.DataFrame:
    """The user table a platform would log: no latent columns."""
    cols = ["user_id", "signup_ts", "age", "gender", "country", "language"]
    return pop.users[cols].copy()


@dataclass
class World:
    """A seeded world at one scale on the shared population; each case's world extends it with items."""

    seed: int
    scale: Scale

    @cached_property
    def population(self) -> Population:
        """The same seed gives the same users in every case's world."""
        return make_population(self.scale.n_users, self.seed, window_days=self.scale.days + 7)

    @cached_property
    def homes(self) -> Homes:
        """Home city and coordinates, school and workplace: one geography for every case."""
        from pipelines.world.social import make_homes

        return make_homes(self.population, self.seed)

    @cached_property
    def social(self) -> SocialGraph:
        """The one friendship graph, grown up to four weeks past the history window."""
        from pipelines.world.social import SocialGraph

        return SocialGraph(self.population, self.homes, self.seed, horizon_days=self.scale.days + 28)

    def public_users(self) -> pd.DataFrame:
        """The population's user table as a platform logs it (cases with the shared social graph)."""
        return public_users(self.population)
