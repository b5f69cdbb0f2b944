"""The harmful-content world: posts by the shared population, rare multi-label harm, noisy reports.

Each post has text, a simulated image embedding and engagement. Per harm class ``c`` an author carries a
latent risk (a few bad actors per class; spam bots are new accounts with few followers). The risk
drives whether the post carries one of the class's phrases (sometimes obfuscated: leetspeak,
misspellings) and whether its image carries the class's signal (a direction in embedding space). The
truth is drawn from a known probability,
``logit p_c = b_c + text_c * phrase_c + image_c * signal_c + 0.8 * risk_c``, with ``b_c`` solved so the
class has its prevalence. Benign look-alikes ("killed it at the gym", "nude lipstick") share words
with harmful phrases and never raise ``p``; image-only harm has no phrase at all. So text alone is not
enough: the image and the author's history carry what the words miss.

Labels come in two kinds, as on a real platform. User reports are noisy and biased (most harm is never
reported, spam hardly ever, look-alikes and some authors' posts are reported wrongly) and exist for
everything; accurate human labels exist on a small sample (``reviewed``). The simulator also knows the
truth and ``p_true`` of every post and class (the oracle), which evaluation uses as a full audit would.
The drift knob brings a new spam campaign (new phrases, more bots) and new obfuscations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from pipelines.world.population import EPOCH, World, public_users

CLASSES = ("violence", "nudity", "hate", "spam")
PREVALENCE = {"violence": 0.008, "nudity": 0.004, "hate": 0.012, "spam": 0.03}
TEXT_WEIGHT = {"violence": 5.0, "nudity": 3.5, "hate": 6.5, "spam": 6.0}
IMAGE_WEIGHT = {"violence": 5.0, "nudity": 6.5, "hate": 2.0, "spam": 1.5}
REPORT_RATE = {"violence": 0.04, "nudity": 0.03, "hate": 0.06, "spam": 0.01}
"""Reports per view of a truly harmful post: people report hate, seldom spam."""
IMAGE_DIM = 16
SCORING_DELAY_H = 12.0
"""A post is scored at upload or up to this many hours later (then with its engagement and reports so far)."""

_FILLER_WORDS = """the a my our this that today tonight weekend morning coffee friends family game match team
city trip beach photo video music song new old great good nice fun happy long short day night food dinner
lunch recipe cat dog garden book movie show love week work school park run gym season sale shop market
street sunset river mountain rain sun snow bike car train bus home kitchen party birthday wedding baby
art paint draw news update story thread question answer idea plan goal win lose play watch read cook"""
FILLER = tuple(_FILLER_WORDS.split())
"""Benign words every post is made of."""
PHRASES = {
    "violence": ("i will kill you", "beat him to death", "shoot them all", "stab you tonight", "burn your house"),
    "nudity": ("nude pics inside", "naked cam show", "send nudes", "explicit pics", "xxx content here"),
    "hate": ("those people are vermin", "go back to your country", "subhuman trash", "they should be exterminated",
             "filthy animals all of them"),
    "spam": ("click here to win", "free followers now", "earn money fast", "crypto giveaway dm me",
             "limited offer buy now"),
}
NEW_SPAM = ("claim your reward link", "double your bitcoin today", "exclusive promo code inside")
"""The drifted window's spam campaign: phrases no training window has seen."""
LOOKALIKES = {
    "violence": ("killed it at the gym", "this song is a shot of energy", "beat the traffic", "burn some calories"),
    "nudity": ("nude lipstick shade", "bare trees in winter", "naked eye astronomy", "skin care routine"),
    "hate": ("i hate mondays", "go back to bed", "trash day again", "animals at the zoo"),
    "spam": ("click the link in bio for my art", "free concert in the park", "win the match", "buy local"),
}
LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def _misspell(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(3)
    if kind == 0:
        return word[:i] + word[i + 1:]  # drop a letter
    if kind == 1:
        return word[:i] + word[i] + word[i:]  # double one
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]  # swap two


def obfuscate(phrase: str, rng: np.random.Generator, new_kinds: bool = False) -> str:
    """Leetspeak or misspellings; a drifted window adds separators and accents models have not seen."""
    kinds = 4 if new_kinds else 2
    kind = rng.integers(kinds)
    if kind == 0:
        return phrase.translate(LEET)
    if kind == 1:
        return " ".join(_misspell(w, rng) for w in phrase.split())
    if kind == 2:
        return " ".join(".".join(w) if len(w) > 3 else w for w in phrase.split())
    return phrase.replace("a", "á").replace("i", "í").replace("o", "ó")


@dataclass
class HarmfulContentWorld(World):
    """A deterministic social platform's posts for one seed and scale."""

    @cached_property
    def authors(self) -> pd.DataFrame:
        """Per user: followers, whether a spam bot, and a latent risk per class (heavy tail: a few bad actors)."""
        rng = np.random.default_rng([self.seed, 61])
        users = self.population.users
        n = len(users)
        new = (users["signup_ts"] > EPOCH - pd.Timedelta(days=30)).to_numpy()
        bot = rng.random(n) < np.where(new, 0.15, 0.01)
        followers = np.where(bot, rng.poisson(3, n), rng.lognormal(4.0, 1.5, n)).astype(np.int64)
        out = pd.DataFrame({"user_id": users["user_id"].to_numpy(), "followers": followers, "bot": bot})
        for c in CLASSES:
            bad = rng.random(n) < 0.015
            risk = rng.normal(-1.0, 0.7, n) + 3.0 * bad
            if c == "spam":
                risk = risk + 3.5 * bot
            out[f"risk_{c}"] = risk
        return out

    @cached_property
    def directions(self) -> np.ndarray:
        """Each class's direction in the image embedding (unit vectors)."""
        d = np.random.default_rng([self.seed, 62]).normal(size=(len(CLASSES), IMAGE_DIM))
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    @cached_property
    def bias(self) -> dict[str, float]:
        """Per class, the intercept that gives its prevalence on undrifted traffic."""
        draw = self._latent(0, 1, 0.0, np.random.default_rng([self.seed, 63]))
        return {c: float(brentq(lambda b, c=c: expit(draw[f"_logit_{c}"] + b).mean() - PREVALENCE[c], -20, 10))
                for c in CLASSES}

    def _latent(self, start_day: int, n_days: int, drift: float, rng: np.random.Generator) -> pd.DataFrame:
        """Who posts when, which phrases, look-alikes and image signals a post carries, and its logits."""
        users, authors = self.population.users, self.authors
        n = max(1, self.scale.events_per_day // 4) * n_days
        start = EPOCH + pd.Timedelta(days=start_day)
        end = start + pd.Timedelta(days=n_days)
        weight = users["activity"].to_numpy() * (users["signup_ts"] < end).to_numpy()
        weight = weight * np.where(authors["bot"], 1.0 + 3.0 * drift, 1.0)  # drift: a new bot campaign
        idx = rng.choice(len(users), n, p=weight / weight.sum())
        signup = users["signup_ts"].dt.tz_convert(None).to_numpy()[idx]
        begin = np.maximum(signup, start.tz_convert(None).to_datetime64())
        span = (end.tz_convert(None).to_datetime64() - begin) / np.timedelta64(1, "s")
        created = begin + (rng.random(n) * span).astype("timedelta64[s]")
        out = pd.DataFrame({"_author": idx, "created_at": pd.to_datetime(created).tz_localize("UTC")})
        for c in CLASSES:
            risk = authors[f"risk_{c}"].to_numpy()[idx]
            out[f"_phrase_{c}"] = rng.random(n) < expit(risk - 3.0)
            out[f"_signal_{c}"] = rng.random(n) < expit(risk - 3.2)
            out[f"_lookalike_{c}"] = rng.random(n) < 0.02
            out[f"_logit_{c}"] = (TEXT_WEIGHT[c] * out[f"_phrase_{c}"] + IMAGE_WEIGHT[c] * out[f"_signal_{c}"]
                                  + 0.8 * risk)
        return out.sort_values("created_at", kind="stable").reset_index(drop=True)

    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
        """users, posts, reports and labels for ``[start_day, start_day + n_days)``."""
        if not 0.0 <= drift <= 1.0:
            raise ValueError(f"drift must be in [0, 1], got {drift}")
        rng = np.random.default_rng([self.seed, 64, start_day, n_days, int(drift * 1000)])
        lat = self._latent(start_day, n_days, drift, rng)
        n = len(lat)
        authors = self.authors.iloc[lat["_author"].to_numpy()].reset_index(drop=True)
        p = np.stack([expit(lat[f"_logit_{c}"].to_numpy() + self.bias[c]) for c in CLASSES], axis=1)
        y = rng.random(p.shape) < p
        post_id = start_day * 10_000_000 + np.arange(n, dtype=np.int64)
        posts = pd.DataFrame({"post_id": post_id, "author_id": authors["user_id"].to_numpy(),
                              "created_at": lat["created_at"],
                              "text": self._texts(lat, drift, rng)})
        signal = np.stack([lat[f"_signal_{c}"].to_numpy() for c in CLASSES], axis=1).astype(float)
        image = rng.normal(0.0, 1.0, (n, IMAGE_DIM)) + 2.0 * signal @ self.directions
        for j in range(IMAGE_DIM):
            posts[f"img_{j:02d}"] = image[:, j].astype(np.float64)
        posts["followers"] = authors["followers"].to_numpy()
        reports = self._reports(posts, lat, y, rng)
        self._engagement(posts, y, rng)
        n_reports = reports.groupby("post_id").size().reindex(post_id, fill_value=0).to_numpy()
        reviewed = (rng.random(n) < 0.03) | ((n_reports >= 2) & (rng.random(n) < 0.8))
        labels = pd.DataFrame({
            "post_id": np.repeat(post_id, len(CLASSES)),
            "harm_class": np.tile(np.array(CLASSES, dtype=object), n),
            "label": y.ravel().astype(np.int64),
            "reviewed": np.repeat(reviewed, len(CLASSES)).astype(np.int64),
            "p_true": p.ravel(),
        })
        end = EPOCH + pd.Timedelta(days=start_day + n_days)
        users = public_users(self.population)
        users = users[users["signup_ts"] < end].reset_index(drop=True)
        return {"users": users, "posts": posts, "reports": reports, "labels": labels}

    def _texts(self, lat: pd.DataFrame, drift: float, rng: np.random.Generator) -> list[str]:
        """Filler words around the post's phrases and look-alikes; some phrases obfuscated."""
        n = len(lat)
        lengths = rng.integers(4, 14, n)
        words = rng.choice(np.array(FILLER, dtype=object), int(lengths.sum()))
        cuts = np.cumsum(lengths)[:-1]
        obfuscation = 0.25 + 0.4 * drift
        parts: list[list[str]] = [list(w) for w in np.split(words, cuts)]
        for c in CLASSES:
            phrase = lat[f"_phrase_{c}"].to_numpy()
            look = lat[f"_lookalike_{c}"].to_numpy()
            for i in np.flatnonzero(phrase):
                pool = NEW_SPAM if c == "spam" and rng.random() < drift else PHRASES[c]
                text = pool[int(rng.integers(len(pool)))]
                if rng.random() < obfuscation:
                    text = obfuscate(text, rng, new_kinds=rng.random() < drift)
                parts[i].insert(int(rng.integers(len(parts[i]) + 1)), text)
            for i in np.flatnonzero(look):
                parts[i].insert(int(rng.integers(len(parts[i]) + 1)), LOOKALIKES[c][int(rng.integers(4))])
        return [" ".join(p) for p in parts]

    def _reports(self, posts: pd.DataFrame, lat: pd.DataFrame, y: np.ndarray, rng: np.random.Generator
                 ) -> pd.DataFrame:
        """Noisy, biased, late reports: most harm is never reported; look-alikes and some authors are."""
        n = len(posts)
        views = rng.lognormal(np.log1p(posts["followers"].to_numpy()) * 0.8 + 1.0, 1.0)
        posts["_views_total"] = views
        rate = y.astype(float) @ np.array([REPORT_RATE[c] for c in CLASSES])
        look = np.stack([lat[f"_lookalike_{c}"].to_numpy() for c in CLASSES], axis=1)
        country = self.population.users["country"].to_numpy()[lat["_author"].to_numpy()]
        biased = np.isin(country, ["NG", "IN"])  # reporters over-report these authors' posts
        false_rate = 0.0002 * (1 + 2 * biased) + 0.002 * look.any(axis=1)
        count = rng.poisson(np.minimum(views * (rate + false_rate), 50))
        row = np.repeat(np.arange(n), count)
        m = len(row)
        delay = rng.exponential(8 * 3600, m)
        # the reported class: a true one when there is one (75%), the look-alike's, or any
        picked = rng.integers(len(CLASSES), size=m)
        truth, fake = y[row], look[row]
        for source, share in ((fake, 0.7), (truth, 0.75)):
            has = source.any(axis=1) & (rng.random(m) < share)
            first = np.argmax(source * rng.random((m, len(CLASSES))), axis=1)
            picked = np.where(has, first, picked)
        created = posts["created_at"].dt.tz_convert(None).to_numpy()[row]
        out = pd.DataFrame({
            "report_id": np.zeros(m, np.int64),
            "post_id": posts["post_id"].to_numpy()[row],
            "reporter_id": rng.integers(1, self.scale.n_users + 1, m).astype(np.int64),
            "reported_at": pd.to_datetime(created + delay.astype("timedelta64[s]")).tz_localize("UTC"),
            "harm_class": np.array(CLASSES, dtype=object)[picked],
        })
        end = posts["created_at"].max().ceil("D")
        out = out[out["reported_at"] < end].sort_values("reported_at", kind="stable").reset_index(drop=True)
        out["report_id"] = posts["post_id"].min() * 10 + np.arange(len(out), dtype=np.int64)
        return out

    def _engagement(self, posts: pd.DataFrame, y: np.ndarray, rng: np.random.Generator) -> None:
        """The moment the platform scores a post and its views, likes and comments by then."""
        n = len(posts)
        delay_h = np.where(rng.random(n) < 0.4, 0.0, rng.uniform(0, SCORING_DELAY_H, n))
        posts["scored_at"] = posts["created_at"] + pd.to_timedelta(np.round(delay_h * 3600), unit="s")
        views = rng.poisson(posts.pop("_views_total").to_numpy() * (1 - np.exp(-delay_h / 6.0)))
        spam, hate = y[:, CLASSES.index("spam")], y[:, CLASSES.index("hate")]
        posts["views"] = views.astype(np.int64)
        posts["likes"] = rng.binomial(views, np.where(spam, 0.01, 0.05)).astype(np.int64)
        posts["comments"] = rng.binomial(views, np.where(hate, 0.03, 0.01)).astype(np.int64)
