"""Validated event tables -> Feast feature tables (one frame per batch feature view).

Every count is a daily snapshot of a cumulative count that starts at the first midnight after what it
counts happened, which is also how the simulator counts what drives a registration: the features a
model reads at time t are exactly what the platform knew when the day of t began.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import count_snapshots, rate_snapshots, smoothed_rate, unix_seconds
from pipelines.world.event import SLOTS, slot_of

SERVICE = "event_recommendation_v1"
SLOT_COLUMNS = [f"slot_share_{i}" for i in range(len(SLOTS))]
NUMERIC = ["distance_km", "hours_until_start", "day_hour_fit", "price_vs_history", "price", "capacity",
           "start_slot", "event_registrations", "event_impressions", "event_register_rate", "host_impressions",
           "host_register_rate", "user_impressions", "user_register_rate", "user_registrations",
           "user_category_registrations", "user_host_registrations", "friends_registered", "invitations", "age"]
CATEGORICAL = ["category"]
FEATURES = NUMERIC + CATEGORICAL
"""The ranker's inputs, all from the FeatureService (its on-demand view computes the first four)."""


def build(run: Run) -> dict[str, pd.DataFrame]:
    """Every feature table from all validated data (the core writes them and applies the Feast views)."""
    events, imps = run.validated("events"), run.validated("impressions")
    return tables(events, imps, run.validated("friendships"), run.validated("invitations"),
                  run.validated("homes"), run.validated("users"), run.params.register_prior)


def tables(events: pd.DataFrame, imps: pd.DataFrame, friendships: pd.DataFrame, invitations: pd.DataFrame,
           homes: pd.DataFrame, users: pd.DataFrame, prior: float) -> dict[str, pd.DataFrame]:
    shown = imps.merge(events[["event_id", "host_id", "category", "price", "start_ts"]], on="event_id", how="inner")
    regs = shown[shown["registered"] == 1]
    at = shown["event_timestamp"]
    return {
        "event_profile": event_profile_table(events),
        "event_registrations": count_snapshots(regs, ["event_id"], regs["event_timestamp"], "event_registrations"),
        "event_engagement": rate_snapshots(shown, ["event_id"], "registered", at, "event", prior,
                                           rate="register_rate"),
        "host_engagement": rate_snapshots(shown, ["host_id"], "registered", at, "host", prior, rate="register_rate"),
        "user_history": user_history_table(shown, prior),
        "user_category_history": count_snapshots(regs, ["user_id", "category"], regs["event_timestamp"],
                                                 "user_category_registrations"),
        "user_host_history": count_snapshots(regs, ["user_id", "host_id"], regs["event_timestamp"],
                                             "user_host_registrations"),
        "user_event_friends": friends_registered_table(regs, friendships),
        "user_event_invitations": count_snapshots(invitations.rename(columns={"invitee_id": "user_id"}),
                                                  ["user_id", "event_id"], invitations["event_timestamp"],
                                                  "invitations"),
        "user_event_registered": count_snapshots(regs, ["user_id", "event_id"], regs["event_timestamp"],
                                                 "registered_before"),
        "user_home": homes[["user_id", "city", "home_lat", "home_lon"]].merge(
            users[["user_id", "signup_ts"]], on="user_id").rename(columns={"signup_ts": "event_timestamp"}),
    }


def event_profile_table(events: pd.DataFrame) -> pd.DataFrame:
    """Static attributes, valid from the event's creation; the start as unix seconds for request-time math.

    Host, category and start time ride along outside the view's schema: the service's event index reads
    them from this file (they are keys of other views, so not features of this one).
    """
    return pd.DataFrame({
        "event_id": events["event_id"], "host_id": events["host_id"], "category": events["category"],
        "start_ts": events["start_ts"], "price": events["price"].astype(float),
        "capacity": events["capacity"].astype(np.int64),
        "venue_lat": events["venue_lat"], "venue_lon": events["venue_lon"],
        "start_s": unix_seconds(events["start_ts"]),
        "start_slot": slot_of(events["start_ts"]), "event_timestamp": events["created_ts"]})


def user_history_table(shown: pd.DataFrame, prior: float) -> pd.DataFrame:
    """Per user: impressions, registration rate, and the price and day/hour habits of their registrations."""
    day = shown["event_timestamp"].dt.floor("D") + pd.Timedelta(days=1)
    reg = shown["registered"].to_numpy()
    slot = slot_of(shown["start_ts"])
    frame = pd.DataFrame({"user_id": shown["user_id"].to_numpy(), "event_timestamp": day.to_numpy(), "n": 1,
                          "reg": reg, "log_price": reg * np.log1p(shown["price"].to_numpy()),
                          **{f"s{i}": reg * (slot == i) for i in range(len(SLOTS))}})
    daily = frame.groupby(["user_id", "event_timestamp"]).sum().reset_index().sort_values(
        ["user_id", "event_timestamp"])
    cum = daily.groupby("user_id")[[c for c in daily.columns if c not in ("user_id", "event_timestamp")]].cumsum()
    out = daily[["user_id", "event_timestamp"]].copy()
    out["user_impressions"] = cum["n"].to_numpy().astype(np.int64)
    out["user_registrations"] = cum["reg"].to_numpy().astype(np.int64)
    out["user_register_rate"] = smoothed_rate(cum["reg"], cum["n"], prior, 20.0).astype(np.float32)
    out["user_mean_log_price"] = np.where(cum["reg"] > 0, cum["log_price"] / np.maximum(cum["reg"], 1), np.nan)
    for i, col in enumerate(SLOT_COLUMNS):  # smoothed towards indifference (a quarter each)
        out[col] = ((cum[f"s{i}"] + 1.0) / (cum["reg"] + len(SLOTS))).to_numpy()
    return out.reset_index(drop=True)


def friends_registered_table(regs: pd.DataFrame, friendships: pd.DataFrame) -> pd.DataFrame:
    """How many friends had registered for the event: a registration counts for the friends it had then.

    A friendship formed after the midnight following the registration does not make it count later,
    as on a platform that notifies friends when someone registers.
    """
    both = pd.concat([friendships[["user_id", "friend_id", "created_ts"]],
                      friendships.rename(columns={"user_id": "friend_id", "friend_id": "user_id"})[
                          ["user_id", "friend_id", "created_ts"]]], ignore_index=True)
    r = regs[["user_id", "event_id", "event_timestamp"]].rename(columns={"user_id": "friend_id"})
    pairs = r.merge(both, on="friend_id")
    pairs = pairs[pairs["created_ts"] < pairs["event_timestamp"].dt.floor("D") + pd.Timedelta(days=1)]
    return count_snapshots(pairs, ["user_id", "event_id"], pairs["event_timestamp"], "friends_registered")
