"""The video case's splits: one global time cut, or each user's latest interactions held out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.params import case_params
from pipelines.core.settings import ConfigError
from pipelines.video_recommendation.case import Split
from pipelines.video_recommendation.split import not_yet_uploaded, split


def _log(seed: int = 0) -> pd.DataFrame:
    """Users arriving in bursts: each is active for a few days somewhere in a year, with 1..40 events."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, 201):
        start = pd.Timestamp("1997-09-20", tz="UTC") + pd.Timedelta(days=int(rng.integers(0, 200)))
        for _ in range(int(rng.integers(1, 41))):
            rows.append((user, int(rng.integers(1, 300)), start + pd.Timedelta(minutes=int(rng.integers(0, 5000))),
                         int(rng.random() < 0.6)))
    log = pd.DataFrame(rows, columns=["user_id", "video_id", "event_timestamp", "positive"])
    log = log.sort_values("event_timestamp", ignore_index=True).assign(event_id=np.arange(len(log)))
    return log.set_axis(np.arange(len(log)) % 50)  # like validated batches read together: labels repeat


def _per_user(**over: object) -> Split:
    return Split(**{"kind": "per_user", "ranker_days": 2, "test_days": 2, "holdout_fraction": 0.2,
                    "min_history": 10, **over})


@pytest.mark.parametrize("holdout", [{"holdout_fraction": 0.2}, {"holdout_fraction": None, "holdout_last_n": 3}])
def test_per_user_holds_out_each_users_latest_interactions(holdout: dict[str, object]) -> None:
    log = _log()
    ranker, test = split(log, _per_user(**holdout))
    counts = log.groupby("user_id").size()
    short = set(counts.index[counts < 10])
    assert short and not short & set(test.heldout["user_id"]) and not short & set(ranker.heldout["user_id"])
    # The three parts are disjoint and cover the log.
    ids = [set(c) for c in (test.heldout["event_id"], ranker.heldout["event_id"], ranker.history["event_id"])]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]) and len(set.union(*ids)) == len(log)
    assert set(test.history["event_id"]) == ids[1] | ids[2]
    # Every held-out interaction is its user's latest: none of the user's history comes after it.
    for held, history in ((test.heldout, test.history), (ranker.heldout, ranker.history)):
        first = held.groupby("user_id")["event_timestamp"].min()
        last_before = history[history["user_id"].isin(first.index)].groupby("user_id")["event_timestamp"].max()
        assert (last_before <= first.reindex(last_before.index)).all()
    per_user = test.heldout.groupby("user_id").size()
    if holdout.get("holdout_last_n"):
        assert (per_user == 3).all()
    else:
        assert (per_user == [-(-n // 5) for n in counts[per_user.index]]).all()  # a fifth, rounded up
    # Users are asked at their own time: the first held-out interaction, never later than any of them.
    assert set(test.as_of.index) == set(test.positives["user_id"])
    assert test.as_of.nunique() > 1 and test.clock == test.as_of.max()


def test_per_user_tests_far_more_users_than_a_global_cut_on_a_bursty_log() -> None:
    log = _log()
    _, per_user = split(log, _per_user())
    _, global_ = split(log, Split(kind="global", ranker_days=2, test_days=2, holdout_fraction=0.2))
    assert per_user.describe()["users"] > 5 * max(global_.describe()["users"], 1)


def test_videos_uploaded_after_a_users_time_are_excluded_for_that_user() -> None:
    videos = pd.DataFrame({"video_id": [1, 2, 3],
                           "upload_ts": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01"], utc=True)})
    as_of = pd.Series(pd.to_datetime(["2020-01-15", "2020-03-01"], utc=True), index=pd.Index([7, 8], name="user_id"))
    assert not_yet_uploaded(videos, as_of) == {7: {2, 3}}


@pytest.mark.parametrize(("over", "message"), [
    ({"holdout_last_n": 2}, "exactly one of split.holdout_fraction and split.holdout_last_n"),
    ({"holdout_fraction": None, "holdout_last_n": 5}, "must exceed twice split.holdout_last_n"),
    ({"holdout_fraction": 0.5}, "holdout_fraction = 0.5 is not allowed"),
    ({"kind": "per-user"}, "split.kind = 'per-user' is not allowed"),
    ({"min_history": 1}, "split.min_history = 1 is not allowed"),
])
def test_bad_split_params_get_one_clear_message(over: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        case_params(cases.spec("video_recommendation"), {"split": over})


def test_the_split_follows_the_source_unless_chosen() -> None:
    spec = cases.spec("video_recommendation")
    assert case_params(spec, {"source": "simulator"}).split.kind == "global"
    assert case_params(spec, {"source": "file"}).split.kind == "per_user"
    assert case_params(spec, {"source": "file", "split": {"kind": "global"}}).split.kind == "global"


def test_the_cli_sets_the_split_for_one_run_and_names_a_bad_value() -> None:
    from typer.testing import CliRunner

    from pipelines.cli import _settings, app

    assert _settings(["split.kind=per_user", "split.holdout_fraction=null", "split.holdout_last_n=3"]) == {
        "split": {"kind": "per_user", "holdout_fraction": None, "holdout_last_n": 3}}
    bad = CliRunner().invoke(app, ["run", "video_recommendation", "-s", "train", "--set", "split.kind=perusr"])
    assert bad.exit_code == 2 and "split.kind = 'perusr' is not allowed" in bad.output
    assert "Traceback" not in bad.output
    assert CliRunner().invoke(app, ["run", "video_recommendation", "--set", "split"]).exit_code == 2


def test_the_candidate_frame_asks_each_user_as_of_their_own_time() -> None:
    """The ranker's training and test frames read features as of each user's first held-out interaction:
    the entity rows Feast joins on carry that time, and the video's age is taken then."""
    from pipelines.video_recommendation.features import RANKER_NUMERIC
    from pipelines.video_recommendation.generators import Popular
    from pipelines.video_recommendation.recommender import TwoStageRecommender

    log = _log()
    ranker, test = split(log, _per_user())
    videos = pd.DataFrame({"video_id": np.arange(1, 300),
                           "upload_ts": pd.Timestamp("1997-09-01", tz="UTC"), "category": "unknown"})
    seen_by_feast: list[pd.DataFrame] = []

    def features(rows: dict[str, object]) -> dict[str, object]:
        seen_by_feast.append(pd.DataFrame({c: rows[c] for c in ("user_id", "event_timestamp")}))
        return {c: np.full(len(rows["user_id"]), np.nan) for c in RANKER_NUMERIC}

    for cut in (ranker, test):
        popular = Popular(days=400).fit(cut.history, videos)
        rec = TwoStageRecommender({"popular": popular}, None, videos, per_generator=5)
        frame = rec.candidate_frame(cut.as_of.index.to_numpy(), cut.clock, features, as_of=cut.as_of)
        asked = seen_by_feast[-1]
        assert set(asked["user_id"]) == set(cut.as_of.index)
        assert (asked["event_timestamp"].to_numpy() == cut.as_of.reindex(asked["user_id"]).to_numpy()).all()
        # Nothing the frame's user did at or after that time is in what the generators learned from.
        later = cut.history.merge(cut.as_of.rename("as_of"), left_on="user_id", right_index=True)
        assert not (later["event_timestamp"] > later["as_of"]).any()
        age = cut.as_of.reindex(frame["user_id"]) - pd.Timestamp("1997-09-01", tz="UTC")
        assert np.allclose(frame["video_age_days"], age / pd.Timedelta(days=1))
