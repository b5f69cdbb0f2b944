"""harmful_content's own logic: the world, the labels, thresholds and decisions, the encoder, the queue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.core.review import ReviewQueue
from pipelines.core.text import HashedNgrams, encoder
from pipelines.harmful_content.labels import known_labels, wide
from pipelines.harmful_content.model import HarmModel, Thresholds, choose_thresholds
from pipelines.harmful_content.source import read_posts
from pipelines.world.harmful_content import CLASSES, PREVALENCE, HarmfulContentWorld, obfuscate
from pipelines.world.population import SCALES


@pytest.fixture(scope="module")
def window() -> dict[str, pd.DataFrame]:
    return HarmfulContentWorld(seed=3, scale=SCALES["tiny"]).window(0, 10)


def test_the_world_is_rare_multilabel_and_deterministic(window: dict[str, pd.DataFrame]) -> None:
    truth = wide(window["labels"])
    for c in CLASSES:
        assert 0.5 * PREVALENCE[c] < truth[c].mean() < 1.5 * PREVALENCE[c]
    assert (truth.sum(axis=1) > 1).any()  # multi-label: some posts break several rules
    again = HarmfulContentWorld(seed=3, scale=SCALES["tiny"]).window(0, 10)
    pd.testing.assert_frame_equal(window["labels"], again["labels"])
    posts = window["posts"]
    assert posts["post_id"].is_unique and (posts["scored_at"] >= posts["created_at"]).all()


def test_reports_are_noisy_natural_labels_and_humans_are_accurate(window: dict[str, pd.DataFrame]) -> None:
    labels, reports = window["labels"], window["reports"]
    truth = wide(labels)
    known = known_labels(labels, reports)
    reviewed = wide(labels, "reviewed").astype(bool)
    assert ((known == truth) | ~reviewed).all().all()  # where a human looked, the label is the truth
    missed = (truth == 1) & (known == 0)
    assert missed.sum().sum() > 0.2 * truth.sum().sum()  # most unreported harm is a negative to the platform
    human = pd.DataFrame({"item_id": [int(truth.index[0])], "class": ["spam"], "label": [1]})
    assert known_labels(labels, reports, human).loc[truth.index[0], "spam"] == 1


def test_the_drift_knob_brings_a_new_spam_campaign(window: dict[str, pd.DataFrame]) -> None:
    world = HarmfulContentWorld(seed=3, scale=SCALES["tiny"])
    drifted = world.window(10, 3, drift=1.0)
    assert drifted["posts"]["text"].str.contains("bitcoin|reward link|promo code").any()
    assert not window["posts"]["text"].str.contains("bitcoin").any()
    assert wide(drifted["labels"])["spam"].mean() > wide(window["labels"])["spam"].mean()
    assert obfuscate("kill", np.random.default_rng(0)) != "kill"


def test_the_precision_lower_bound_sets_removal_and_too_few_positives_mean_review_only() -> None:
    from scipy.stats import beta

    rng = np.random.default_rng(0)
    y = (rng.random((4000, 2)) < 0.05).astype(int)
    y[:, 1] = 0
    y[:12, 1] = 1  # class b: 12 validation positives, every one scored above every negative
    p = np.clip(y * [0.45, 0.6] + rng.random((4000, 2)) * [0.6, 0.5], 0, 1)  # a overlaps, b separates
    t = choose_thresholds(y, p, ("a", "b"), remove_precision=0.95, review_precision=0.3, confidence=0.95)
    removed = p[:, 0] >= t["a"].remove
    hits, n = int(y[removed, 0].sum()), int(removed.sum())
    assert t["a"].automatic_removal and beta.ppf(0.05, hits, n - hits + 1) >= 0.95  # the bound, not 0.95 itself
    assert "lower bound" in t["a"].rule and t["a"].review <= t["a"].remove
    point = [q for q in np.sort(p[:, 0])[-400:] if y[p[:, 0] >= q, 0].mean() >= 0.95]
    assert min(point) < t["a"].remove  # the point precision alone would remove more, and more wrongly
    # b's top 12 posts are 12 of 12 harmful (point precision 1.0), but 12 cannot bound it above 0.95
    assert y[p[:, 1] >= np.sort(p[:, 1])[-12], 1].mean() == 1.0
    assert not t["b"].automatic_removal and t["b"].rule.startswith("review-only")
    assert t["b"].review <= float(np.sort(p[:, 1])[-12])  # its clear cases still reach the queue
    looser = choose_thresholds(y, p, ("a", "b"), remove_precision=0.95, review_precision=0.3, confidence=0.5)
    assert looser["a"].remove <= t["a"].remove  # less confidence asked, more removed
    model = HarmModel("fusion", ("a", "b"), HashedNgrams(), None, 0.05,
                      thresholds={"a": Thresholds(0.9, 0.5), "b": Thresholds(0.8, 0.3)})
    assert model.decide(np.array([0.95, 0.1])) == ("remove", "a", 0.9)
    assert model.decide(np.array([0.6, 0.7])) == ("review", "b", 0.3)  # furthest above its own threshold
    assert model.decide(np.array([0.1, 0.1])) == ("allow", None, None)


def test_the_default_encoder_needs_no_download_and_sees_through_leetspeak() -> None:
    enc = encoder("hashed")
    x = enc.encode(["i will kill you", "i w1ll k1ll y0u", "coffee with friends"]).toarray()
    assert x.shape == (3, enc.dim)
    assert x[0] @ x[1] > x[0] @ x[2]
    with pytest.raises(ValueError, match="sentence-transformers"):
        encoder("sentence-transformers:all-MiniLM-L6-v2").encode(["x"])
    with pytest.raises(ValueError, match="unknown text encoder"):
        encoder("bert")


def test_the_review_queue_keeps_a_post_once_and_its_labels(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "q.sqlite")
    assert queue.enqueue(7, "spam >= 0.2", {"spam": 0.4, "hate": 0.1}, {"text": "buy now"})
    assert not queue.enqueue(7, "spam >= 0.2", {"spam": 0.4, "hate": 0.1}, {"text": "buy now"})  # a retry
    assert [i["item_id"] for i in ReviewQueue(tmp_path / "q.sqlite").items()] == [7]  # persistent
    with pytest.raises(ValueError, match="classes the item was scored for"):
        queue.label(7, {"violence": 1})
    with pytest.raises(LookupError):
        queue.label(8, {"spam": 1})
    queue.label(7, {"spam": 1, "hate": 0})
    assert queue.items() == [] and len(queue.items("labeled")) == 1
    labels = pd.read_parquet(queue.labels_path)
    assert labels.set_index("class")["label"].to_dict() == {"hate": 0, "spam": 1}
    out = queue.export(tmp_path / "all.csv")
    assert "buy now" in out.read_text()


def test_a_file_names_its_own_classes(tmp_path: Path) -> None:
    f = tmp_path / "posts.csv"
    pd.DataFrame({"text": ["hello", "buy now", "bad words"], "scam": [0, 1, 0], "toxic": [0, 0, 1]}
                 ).to_csv(f, index=False)
    tables = read_posts(f)
    assert set(tables["labels"]["harm_class"]) == {"scam", "toxic"} and (tables["labels"]["reviewed"] == 1).all()
    assert len(tables["posts"]) == 3 and tables["reports"].empty
    pd.DataFrame({"text": ["a", "b"], "scam": [2, 0]}).to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"posts.csv: class column 'scam' must hold 0 or 1"):
        read_posts(f)
    pd.DataFrame({"text": ["a"]}).to_csv(f, index=False)
    with pytest.raises(ValueError, match="no class column"):
        read_posts(f)


def test_a_file_with_extra_columns_and_odd_timestamps_is_read_and_a_bad_row_is_named(tmp_path: Path) -> None:
    f = tmp_path / "posts.csv"
    good = pd.DataFrame({"text": ["hello", "buy now", "bad words"], "scam": [0, 1, 0],
                         "created_at": ["2025-03-01T10:00:00Z", "2025-03-01 12:30:00+02:00", "2025-03-01"],
                         "views": [10, 0, 3], "likes": [1, 0, 0], "followers": [5, 2, 9]})
    good.to_csv(f, index=False)
    posts = read_posts(f)["posts"].set_index("text")
    assert posts.loc["buy now", "created_at"] == pd.Timestamp("2025-03-01 10:30", tz="UTC")  # offsets honoured
    assert posts.loc["bad words", "created_at"] == pd.Timestamp("2025-03-01", tz="UTC")
    assert posts["views"].tolist() == [10, 0, 3] and "comments" not in posts  # counts kept, absent ones absent
    seconds = good.assign(created_at=[1740823200, 1740826800.5, 1740830400])
    seconds.to_parquet(tmp_path / "posts.parquet")
    assert read_posts(tmp_path / "posts.parquet")["posts"]["created_at"].iloc[1] == pd.Timestamp(
        "2025-03-01 11:00:00.5", tz="UTC")
    for change, message in (({"lang": ["en", "de", "fr"]}, r"\['lang'\] hold no 0/1 value.*drop the column"),
                            ({"scam": [0, "yes", 1]}, r"'scam' must hold 0 or 1; 1 rows do not, e.g. 'yes'"),
                            ({"created_at": ["2025-03-01", "03/01/2025 10:00", "2025-03-02"]},
                             r"1 values that are not timestamps, e.g. '03/01/2025 10:00'"),
                            ({"views": [1, -4, 2]}, r"'views' must hold counts .* e.g. -4"),
                            ({"text": ["a", None, "c"]}, r"'text' is empty in 1 rows")):
        good.assign(**change).to_csv(f, index=False)
        with pytest.raises(ValueError, match=message):
            read_posts(f)


def test_early_stopping_keeps_the_best_weights_and_waits_patience_checks() -> None:
    import torch

    from pipelines.core.training import EarlyStopping

    net = torch.nn.Linear(1, 1, bias=False)
    stopper = EarlyStopping(patience=2, min_delta=1e-4, lower_is_better=False)
    stops = []
    for weight, score in ((1.0, 0.5), (2.0, 0.7), (3.0, 0.70005), (4.0, 0.6)):
        net.weight.data.fill_(weight)
        stops.append(stopper.check(score, net))
    assert stops == [False, False, False, True]  # a gain under min_delta is no gain
    stopper.restore(net)
    assert float(net.weight) == 2.0
    with pytest.raises(RuntimeError, match="before any check"):
        EarlyStopping(1, 0.0, lower_is_better=True).restore(net)
