"""The video world: creators upload videos, the homepage shows slates of them, users click, watch and react.

Every label is drawn from a known model:

* A user's taste is their shared ``interests`` (the vector ad_click uses, weighted up) plus a personal video
  taste; a video's topic is mostly its category with a little of others. ``affinity = taste . topic``.
* The logging policy (the platform's current recommender) ranks every uploaded video the user has not yet
  engaged with positively by ``affinity + language match + log Zipf popularity + freshness boost`` plus
  Gumbel noise (a Plackett-Luce ranking); the user scrolls a geometric number of positions. Logged
  positives carry signal about affinity, but exposure is skewed towards popular and fresh videos.
* For the impression at position ``k``: ``logit p_click = bias + affinity + quality + propensity + language
  + novelty - POSITION_SLOPE * log k``; given a click, the watch fraction is Beta with a mean that rises with
  affinity and quality and falls with duration, and the reaction is like / dislike / none (a softmax).
  ``positive = clicked and (watch_fraction >= 0.5 or liked) and not disliked``; ``p_positive`` is exact,
  and ``bias`` is solved so about ``TARGET_POSITIVE_RATE`` of impressions are positive.

``true_scores`` is the probability of at least one positive in the next days, exposure included: the
oracle of a recommender evaluated on logged positives. It is computed, not sampled; the one approximation
treats the number of videos the policy ranks above a given one as two points with the right mean and
variance (within ~2% of Monte Carlo).

The drift knob moves the next window: personal tastes shift in a fixed random direction, and an emerging
category gains interest everywhere and is promoted by the platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import brentq
from scipy.special import betainc, expit, log_softmax

from pipelines.world.population import (
    EPOCH,
    LANGUAGE_OF,
    N_INTERESTS,
    World,
    public_users,
    zipf_weights,
)

# Index i is latent interest dimension i; the order matches ad_click's categories (apparel -> fashion, ...).
CATEGORIES = np.array(["fashion", "autos", "beauty", "finance", "cooking", "gaming", "fitness", "home",
                       "music", "sports", "tech", "travel"])
assert len(CATEGORIES) == N_INTERESTS
TAGS: dict[str, tuple[str, ...]] = {
    "fashion": ("outfit", "streetwear", "haul", "style", "thrift", "sneakers"),
    "autos": ("cars", "ev", "roadtrip", "detailing", "racing", "motorbike"),
    "beauty": ("makeup", "skincare", "nails", "hair", "grwm", "fragrance"),
    "finance": ("investing", "stocks", "budget", "crypto", "realestate", "taxes"),
    "cooking": ("recipe", "baking", "vegan", "streetfood", "bbq", "mealprep"),
    "gaming": ("minecraft", "speedrun", "esports", "letsplay", "retro", "fps"),
    "fitness": ("workout", "yoga", "running", "gym", "hiit", "stretching"),
    "home": ("diy", "decor", "garden", "renovation", "cleaning", "tinyhouse"),
    "music": ("cover", "guitar", "piano", "kpop", "hiphop", "concert"),
    "sports": ("football", "basketball", "cricket", "tennis", "f1", "highlights"),
    "tech": ("smartphone", "unboxing", "coding", "ai", "pcbuild", "gadgets"),
    "travel": ("backpacking", "citytour", "beach", "hiking", "foodtour", "vanlife"),
}
FORMAT_TAGS = ("shorts", "vlog", "tutorial", "review", "live", "challenge")
TITLE_TEMPLATES = ("{t} you need to see", "I tried {t} for 30 days", "top 10 {t} moments", "{t} explained",
                   "best {t} of the year", "{t} for beginners", "why everyone loves {t}", "{t} gone wrong")
MEDIAN_DURATION_S = np.array(  # per category, in CATEGORIES order
    [420, 780, 540, 900, 600, 1500, 1200, 840, 260, 600, 720, 960], float)

MAX_POSITION = 40
SCROLL_STOP = 1 / 9  # after the first 2 positions a user stops scrolling with this chance per position


def shown(position: np.ndarray) -> np.ndarray:
    """P(a session reaches ``position``): the slate length is 2 + Geometric(SCROLL_STOP), capped."""
    reach = np.exp((np.asarray(position, float) - 3.0) * np.log1p(-SCROLL_STOP))
    return np.where(position <= MAX_POSITION + 0.5, np.minimum(1.0, reach), 0.0)


MEAN_SLATE = float(shown(np.arange(1, MAX_POSITION + 1)).sum())
FRESH_SHARE = 0.12  # share of videos uploaded from day 0 on (during and after the simulated window)
PERSONAL_TASTE = 0.45  # std of a user's own video taste on top of the shared interests
INTEREST_WEIGHT = 1.4  # how strongly the shared interests drive video taste

# The logging policy (how the platform chose what to show).
POLICY_AFFINITY = 1.0
POLICY_FRESH, POLICY_FRESH_DAYS = 1.5, 2.0
POPULARITY_EXPONENT = 1.0
# The user's response.
TARGET_POSITIVE_RATE = 0.05  # the click intercept is solved for this share of positive impressions
POSITION_SLOPE = 0.45
NOVELTY, NOVELTY_DAYS = 0.4, 3.0
LANGUAGE_EFFECT = {"match": 0.0, "english": -0.5, "other": -1.6}
WATCH0, WATCH_AFFINITY, WATCH_QUALITY, WATCH_LENGTH, WATCH_CONCENTRATION = -0.1, 0.7, 0.8, 0.25, 3.0
LIKE0, DISLIKE0, REACTION_AFFINITY = -2.0, -3.0, 0.9
# Drift.
TASTE_SHIFT, EMERGING_INTEREST, EMERGING_PROMOTION = 0.6, 1.0, 1.0

_CHUNK = 256  # sessions simulated at once: the watched-set is updated between chunks
_QUADRATURE, _GRID, _BINS = 24, 64, 128  # the oracle's numerical resolution


@dataclass(frozen=True)
class _Videos:
    """The video catalogue with the latent parts no table shows."""

    table: pd.DataFrame
    upload_day: np.ndarray  # days since EPOCH (float)
    category: np.ndarray  # index into CATEGORIES
    topic: np.ndarray  # (n, N_INTERESTS), rows sum to 1
    quality: np.ndarray
    log_popularity: np.ndarray  # log Zipf weight the logging policy uses
    log_duration: np.ndarray  # log(duration / 300 s)
    language: np.ndarray  # index into the language vocabulary


@dataclass
class VideoWorld(World):
    """A deterministic video platform for one seed and scale, on the shared user population."""

    @cached_property
    def _languages(self) -> np.ndarray:
        return np.array(sorted(set(LANGUAGE_OF.values())))

    @cached_property
    def _users(self) -> dict[str, np.ndarray]:
        """Per-user arrays the simulation reads: taste, language, activity, signup."""
        users = self.population.users
        own = np.random.default_rng([self.seed, 20]).normal(0.0, PERSONAL_TASTE, self.population.interests.shape)
        return {
            "taste": INTEREST_WEIGHT * self.population.interests + own,
            "language": np.searchsorted(self._languages, users["language"].to_numpy()),
            "activity": users["activity"].to_numpy(),
            "propensity": users["propensity"].to_numpy(),
            "signup_day": _days(users["signup_ts"]),
        }

    @cached_property
    def emerging_category(self) -> str:
        """The category that gains interest and promotion as drift grows."""
        return str(CATEGORIES[np.random.default_rng([self.seed, 21]).integers(N_INTERESTS)])

    @cached_property
    def _catalogue(self) -> _Videos:
        rng = np.random.default_rng([self.seed, 22])
        n = self.scale.n_items
        n_creators = max(10, n // 6)
        creator = rng.choice(n_creators, n, p=zipf_weights(n_creators, 0.8, rng)) + 1
        home = rng.choice(N_INTERESTS, n_creators + 1, p=rng.dirichlet(np.full(N_INTERESTS, 3.0)))
        category = np.where(rng.random(n) < 0.8, home[creator], rng.integers(0, N_INTERESTS, n))
        topic = 0.75 * np.eye(N_INTERESTS)[category] + 0.25 * rng.dirichlet(np.full(N_INTERESTS, 0.2), n)
        # Creators speak their audience's languages; a third of the catalogue is in English for everyone.
        creator_lang = self.population.users["language"].to_numpy()[rng.integers(0, self.population.n, n_creators + 1)]
        language = np.where(rng.random(n_creators + 1) < 0.35, "en", creator_lang)[creator]
        short = rng.random(n) < 0.2
        duration = np.where(short, rng.uniform(5, 60, n),
                            np.exp(np.log(MEDIAN_DURATION_S[category]) + rng.normal(0.0, 0.7, n)))
        duration = np.round(np.clip(duration, 5, 7200), 1)
        fresh = rng.random(n) < FRESH_SHARE
        upload_day = np.where(fresh, rng.uniform(0, self.scale.days + 7, n),
                              -np.minimum(rng.exponential(90.0, n), 720) - 0.01)
        quality = rng.normal(0.0, 0.5, n)
        # Good videos tend to be popular, but buzz is mostly luck.
        buzz_rank = np.argsort(np.argsort(-(quality + rng.normal(0.0, 0.8, n))))
        log_popularity = -POPULARITY_EXPONENT * np.log1p(buzz_rank)
        tags, titles = [], []
        for i in range(n):
            cat_tags = TAGS[CATEGORIES[category[i]]]
            k = rng.integers(1, 5)
            chosen = list(rng.choice(cat_tags, k, replace=False))
            if short[i]:
                chosen.append("shorts")
            elif rng.random() < 0.3:
                chosen.append(str(rng.choice(FORMAT_TAGS[1:])))
            tags.append("|".join(chosen))
            titles.append(str(rng.choice(TITLE_TEMPLATES)).format(t=chosen[0]).capitalize())
        table = pd.DataFrame(
            {
                "video_id": np.arange(1, n + 1, dtype=np.int64),
                "upload_ts": EPOCH + pd.to_timedelta(np.round(upload_day * 86_400), unit="s"),
                "creator_id": creator.astype(np.int64),
                "duration_s": duration,
                "language": language,
                "category": CATEGORIES[category],
                "tags": tags,
                "title": titles,
            }
        )
        return _Videos(table=table, upload_day=_days(table["upload_ts"]), category=category, topic=topic,
                       quality=quality, log_popularity=log_popularity, log_duration=np.log(duration / 300.0),
                       language=np.searchsorted(self._languages, language))

    def videos(self) -> pd.DataFrame:
        """Every video, including those uploaded after any window (the catalogue as of the far future)."""
        return self._catalogue.table.copy()

    # -- the latent model -------------------------------------------------------------------------------
    def _taste(self, drift: float) -> np.ndarray:
        taste = self._users["taste"]
        if drift == 0:
            return taste
        shift = np.random.default_rng([self.seed, 23]).normal(0.0, TASTE_SHIFT, taste.shape)
        emerging = np.eye(N_INTERESTS)[list(CATEGORIES).index(self.emerging_category)]
        return taste + drift * (shift + EMERGING_INTEREST * emerging)

    def _affinity_and_language(self, u: np.ndarray, v: np.ndarray, drift: float) -> tuple[np.ndarray, np.ndarray]:
        """Taste . topic and the language effect for broadcastable user and video index arrays."""
        affinity = np.einsum("...k,...k->...", self._taste(drift)[u], self._catalogue.topic[v])
        ulang, vlang = self._users["language"][u], self._catalogue.language[v]
        english = np.searchsorted(self._languages, "en")
        language = np.where(ulang == vlang, LANGUAGE_EFFECT["match"],
                            np.where(vlang == english, LANGUAGE_EFFECT["english"], LANGUAGE_EFFECT["other"]))
        return affinity, language

    def _policy(self, user_idx: np.ndarray, day: np.ndarray, drift: float) -> np.ndarray:
        """The logging policy's logits for (sessions, all videos); -inf for videos not uploaded yet."""
        v = self._catalogue
        every = np.arange(len(v.quality))[None, :]
        affinity, language = self._affinity_and_language(user_idx[:, None], every, drift)
        age = day[:, None] - v.upload_day[None, :]
        promoted = drift * EMERGING_PROMOTION * (CATEGORIES[v.category] == self.emerging_category)
        policy = (POLICY_AFFINITY * (affinity + language) + v.log_popularity + promoted
                  + POLICY_FRESH * np.exp(-np.maximum(age, 0.0) / POLICY_FRESH_DAYS))
        return np.where(age >= 0, policy, -np.inf)

    def _response(self, u: np.ndarray, v: np.ndarray, day: np.ndarray, drift: float) -> dict[str, np.ndarray]:
        """The user's response model for broadcastable (user, video, day) arrays, before position bias."""
        c = self._catalogue
        affinity, language = self._affinity_and_language(u, v, drift)
        age = np.maximum(day - c.upload_day[v], 0.0)
        click = (affinity + c.quality[v] + self._users["propensity"][u] + language
                 + NOVELTY * np.exp(-age / NOVELTY_DAYS))
        watch_mean = expit(WATCH0 + WATCH_AFFINITY * affinity + WATCH_QUALITY * c.quality[v]
                           - WATCH_LENGTH * c.log_duration[v])
        a, b = watch_mean * WATCH_CONCENTRATION, (1 - watch_mean) * WATCH_CONCENTRATION
        react = np.stack(np.broadcast_arrays(0.0, LIKE0 + REACTION_AFFINITY * affinity + c.quality[v],
                                             DISLIKE0 - REACTION_AFFINITY * affinity - c.quality[v]))
        p_none, p_like, p_dislike = np.exp(log_softmax(react, axis=0))
        p_half = 1.0 - betainc(a, b, 0.5)  # P(watch fraction >= 0.5 | click)
        return {"click": click, "a": a, "b": b, "p_like": p_like, "p_dislike": p_dislike,
                "p_keep": p_like + p_none * p_half}

    def _p_click(self, click: np.ndarray, position: np.ndarray) -> np.ndarray:
        return expit(self._bias + click - POSITION_SLOPE * np.log(position))

    @cached_property
    def _bias(self) -> float:
        """The click intercept that makes ``TARGET_POSITIVE_RATE`` of undrifted impressions positive."""
        rng = np.random.default_rng([self.seed, 25])
        p_user, active_from = self._session_weights(0.0, 1.0)
        user = rng.choice(len(p_user), _CHUNK, p=p_user)
        day = active_from[user] + rng.random(_CHUNK) * (1.0 - active_from[user])
        length = np.minimum(2 + rng.geometric(SCROLL_STOP, _CHUNK), MAX_POSITION)
        row, k, vid = _slates(self._policy(user, day, 0.0), length, rng)
        r = self._response(user[row], vid, day[row], 0.0)

        def excess(b: float) -> float:
            return float((expit(b + r["click"] - POSITION_SLOPE * np.log(k)) * r["p_keep"]).mean()
                         - TARGET_POSITIVE_RATE)

        return float(brentq(excess, -15.0, 5.0))

    def _session_weights(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Each user's share of sessions in ``[start, end)`` days and the day they become active in it."""
        active_from = np.maximum(self._users["signup_day"], start)
        weight = self._users["activity"] * np.clip(end - active_from, 0.0, None)
        return weight / weight.sum(), active_from

    # -- windows ---------------------------------------------------------------------------------------
    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
        """All tables as the platform would log them for ``[start_day, start_day + n_days)``.

        The policy never re-shows a video the user already engaged with positively, so evaluations should
        exclude each user's earlier positives. The platform remembers: a window starting after day 0
        continues from the calm history ``[0, start_day)`` (replayed, so it is the history the flows
        ingested), whose positives stay hidden too.
        """
        if not 0.0 <= drift <= 1.0:
            raise ValueError(f"drift must be in [0, 1], got {drift}")
        if n_days < 1:
            raise ValueError(f"n_days must be at least 1, got {n_days}")
        rng = np.random.default_rng([self.seed, 24, start_day, n_days, int(drift * 1000)])
        interactions = self._simulate(start_day, n_days, drift, rng, self._liked_before(start_day))
        end = EPOCH + pd.Timedelta(days=start_day + n_days)
        users = public_users(self.population)
        videos = self.videos()
        return {"users": users[users["signup_ts"] < end].reset_index(drop=True),
                "videos": videos[videos["upload_ts"] < end].reset_index(drop=True),
                "interactions": interactions}

    def _liked_before(self, start_day: int) -> sparse.csr_matrix:
        """(users, videos) positives of the calm history before ``start_day``: never shown to them again."""
        shape = (self.population.n, self.scale.n_items)
        if start_day <= 0:
            return sparse.csr_matrix(shape, dtype=bool)
        it = self.window(0, start_day)["interactions"]
        pos = it[it["positive"] == 1]
        return sparse.csr_matrix((np.ones(len(pos), bool), (pos["user_id"].to_numpy() - 1,
                                                             pos["video_id"].to_numpy() - 1)), shape=shape)

    def _simulate(self, start_day: int, n_days: int, drift: float, rng: np.random.Generator,
                  seen: sparse.csr_matrix) -> pd.DataFrame:
        """Sessions in time order; each chunk's positives (and ``seen``) hide those videos from later slates."""
        start, end = float(start_day), float(start_day + n_days)
        n_sessions = round(self.scale.events_per_day * n_days / MEAN_SLATE)
        p_user, active_from = self._session_weights(start, end)
        user = rng.choice(len(p_user), n_sessions, p=p_user)
        day = active_from[user] + rng.random(n_sessions) * (end - active_from[user])
        order = np.argsort(day, kind="stable")
        user, day = user[order], day[order]
        length = np.minimum(2 + rng.geometric(SCROLL_STOP, n_sessions), MAX_POSITION)

        parts = []
        for lo in range(0, n_sessions, _CHUNK):
            u, d = user[lo:lo + _CHUNK], day[lo:lo + _CHUNK]
            policy = np.where(seen[u].toarray(), -np.inf, self._policy(u, d, drift))
            row, k, vid = _slates(policy, length[lo:lo + _CHUNK], rng)
            u, d = u[row], d[row]
            r = self._response(u, vid, d, drift)
            p_click = self._p_click(r["click"], k)
            clicked = rng.random(len(row)) < p_click
            watch = np.round(rng.beta(r["a"], r["b"]), 4)  # as logged, so the label rule holds on the table
            reaction = rng.random(len(row))
            liked = clicked & (reaction < r["p_like"])
            disliked = clicked & ~liked & (reaction < r["p_like"] + r["p_dislike"])
            positive = clicked & ((watch >= 0.5) | liked) & ~disliked
            seen = seen + sparse.csr_matrix((np.ones(positive.sum(), bool), (u[positive], vid[positive])),
                                            shape=seen.shape)
            parts.append(pd.DataFrame({
                "event_timestamp": EPOCH + pd.to_timedelta(np.round(d * 86_400) + k - 1, unit="s"),
                "user_id": (u + 1).astype(np.int64),
                "video_id": (vid + 1).astype(np.int64),
                "position": k.astype(np.int64),
                "clicked": clicked.astype(np.int64),
                "watch_fraction": np.where(clicked, watch, 0.0),
                "liked": liked.astype(np.int64),
                "disliked": disliked.astype(np.int64),
                "positive": positive.astype(np.int64),
                "p_positive": p_click * r["p_keep"],
            }))
        out = pd.concat(parts, ignore_index=True).sort_values("event_timestamp", kind="stable", ignore_index=True)
        # Ids are unique across windows: day-major, then order within the window.
        out.insert(0, "event_id", start_day * 10_000_000 + np.arange(len(out), dtype=np.int64))
        return out

    # -- the oracle ------------------------------------------------------------------------------------
    def true_scores(self, user_ids: np.ndarray, video_ids: np.ndarray, at: pd.Timestamp, drift: float = 0.0,
                    horizon_days: float = 2.0, exclude: Mapping[int, Iterable[int]] | None = None) -> np.ndarray:
        """P(the user has a positive on the video in ``[at, at + horizon_days)``), exposure included.

        The Bayes-optimal ranking key for recall against the logged positives of a later window. Videos
        not uploaded by ``at`` score 0. ``exclude`` (user id -> video ids, e.g. the user's earlier
        positives) are videos the policy no longer shows that user: they score 0 and free their exposure
        for the rest. As a probability it matches the log within a few percent; it leaves out that the
        policy also hides the videos a user engages with during the horizon.
        """
        user_idx = np.asarray(user_ids, dtype=np.int64) - 1
        video_idx = np.asarray(video_ids, dtype=np.int64) - 1
        if user_idx.size and (user_idx.min() < 0 or user_idx.max() >= self.population.n):
            raise ValueError(f"user ids must be in 1..{self.population.n}")
        if video_idx.size and (video_idx.min() < 0 or video_idx.max() >= self.scale.n_items):
            raise ValueError(f"video ids must be in 1..{self.scale.n_items}")
        at = pd.Timestamp(at)
        now = float(((at if at.tzinfo else at.tz_localize("UTC")) - EPOCH) / pd.Timedelta(days=1))
        p_user, _ = self._session_weights(now, now + horizon_days)
        sessions = self.scale.events_per_day * horizon_days / MEAN_SLATE * p_user[user_idx]
        hidden = np.zeros((len(user_idx), self.scale.n_items), dtype=bool)
        for i, user in enumerate(user_idx + 1):
            done = np.fromiter((exclude or {}).get(int(user), ()), dtype=np.int64) - 1
            hidden[i, done[(done >= 0) & (done < self.scale.n_items)]] = True
        out = np.zeros((len(user_idx), len(video_idx)))
        step = max(1, 4_000_000 // (_QUADRATURE * self.scale.n_items))  # bounds the (users, videos, quad) arrays
        for lo in range(0, len(user_idx), step):
            sl = slice(lo, lo + step)
            per_session = self._positives_per_session(user_idx[sl], hidden[sl], now, now + horizon_days / 2, drift)
            out[sl] = -np.expm1(-sessions[sl, None] * per_session[:, video_idx])
        return out

    def _positives_per_session(self, user_idx: np.ndarray, hidden: np.ndarray, now: float, day: float,
                               drift: float) -> np.ndarray:
        """E[positives on each video in one session at ``day``] for (users, all videos), by Gumbel quadrature.

        Given video v's own Gumbel draw g, its policy score is x = s_v + g and its position is 1 plus the
        number of other videos scoring above x, whose mean is ``N(x) - P(v above x)`` with
        ``N(x) = sum_w 1 - exp(-exp(s_w - x))``. N is a sum over videos, computed once per user on a
        histogram of the scores and a grid of x, then interpolated.
        """
        n_users, n_videos = len(user_idx), self.scale.n_items
        policy = self._policy(user_idx, np.full(n_users, day), drift)
        policy[hidden | (self._catalogue.upload_day > now)[None, :]] = -np.inf
        finite = np.isfinite(policy)
        lo = np.where(finite, policy, np.inf).min(axis=1, keepdims=True)
        hi = np.where(finite, policy, -np.inf).max(axis=1, keepdims=True)
        # E over the Gumbel draw g as an integral over its CDF value q in (0, 1), by Gauss-Legendre.
        q, weight = np.polynomial.legendre.leggauss(_QUADRATURE)
        q, weight = (q + 1) / 2, weight / 2
        g = -np.log(-np.log(q))
        p_self_above = 1.0 - q
        # Histogram of each user's scores (bin centres, counts), then N on a grid of x.
        width = np.maximum(hi - lo, 1e-9) / _BINS
        score = np.where(finite, policy, lo)
        b = np.clip(((score - lo) / width).astype(np.int64), 0, _BINS - 1)
        rows = np.broadcast_to(np.arange(n_users)[:, None], b.shape)
        counts = np.bincount((rows * _BINS + b)[finite], minlength=n_users * _BINS).reshape(n_users, _BINS)
        centres = lo + (np.arange(_BINS) + 0.5) * width
        x_lo, x_hi = lo + g[0] - 1.0, hi + g[-1] + 1.0
        grid = x_lo + (x_hi - x_lo) * np.linspace(0.0, 1.0, _GRID)[None, :]
        p_above = -np.expm1(-np.exp(centres[:, None, :] - grid[:, :, None]))  # (users, grid, bins)
        n_above = (counts[:, None, :] * p_above).sum(axis=2)
        var_above = (counts[:, None, :] * p_above * (1 - p_above)).sum(axis=2)
        # Interpolate at x = s_v + g for every video and quadrature point.
        x = score[:, :, None] + g[None, None, :]
        at = (x - x_lo[:, :, None]) / (x_hi - x_lo)[:, :, None] * (_GRID - 1)
        i0 = np.clip(at.astype(np.int64), 0, _GRID - 2)
        frac = np.clip(at - i0, 0.0, 1.0)
        r = np.arange(n_users)[:, None, None]

        def interpolate(table: np.ndarray) -> np.ndarray:
            return table[r, i0] * (1 - frac) + table[r, i0 + 1] * frac

        # The others above are a sum of independent Bernoullis: two points matching its mean and variance.
        mean = np.maximum(interpolate(n_above) - p_self_above, 0.0)
        spread = np.sqrt(np.maximum(interpolate(var_above) - p_self_above * (1 - p_self_above), 0.0))
        resp = self._response(user_idx[:, None], np.arange(n_videos)[None, :], np.full((n_users, 1), day), drift)
        value = 0.0
        for position in (1.0 + np.maximum(mean - spread, 0.0), 1.0 + mean + spread):
            value = value + 0.5 * shown(position) * self._p_click(resp["click"][:, :, None], position)
        return np.where(finite, value @ weight * resp["p_keep"], 0.0)


def _slates(policy: np.ndarray, length: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Plackett-Luce slates: rank by policy + Gumbel noise, keep each session's first ``length`` videos.

    Returns (session row, position 1.., video index) of every impression; -inf videos are never shown.
    """
    noisy = policy + rng.gumbel(size=policy.shape)
    top = min(MAX_POSITION, policy.shape[1])
    cand = np.argpartition(-noisy, top - 1, axis=1)[:, :top]
    cand = np.take_along_axis(cand, np.argsort(-np.take_along_axis(noisy, cand, 1), axis=1), 1)
    row, k = np.nonzero(np.arange(top)[None, :] < length[:, None])
    vid = cand[row, k]
    shown = np.isfinite(noisy[row, vid])
    return row[shown], k[shown] + 1, vid[shown]


def _days(ts: pd.Series) -> np.ndarray:
    """Timestamps as float days since EPOCH."""
    return ((ts - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)
