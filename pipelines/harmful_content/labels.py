"""The two kinds of labels, as the book has them, and the reviewers' labels from the queue.

*Natural* labels come from user reports on everything: a post reported for a class is a positive of
that class (noisy: most harm is never reported, look-alikes are). *Human* labels are accurate, on a small
sample (``reviewed``) and from the review queue; where a human looked, their label wins. What the
platform knows trains the model; evaluation windows are audited (every post's true label).
"""

from __future__ import annotations

import pandas as pd


def classes(labels: pd.DataFrame) -> tuple[str, ...]:
    """The harm classes of the data, in their first-seen order (the simulator's, or the file's columns)."""
    return tuple(dict.fromkeys(labels["harm_class"].astype(str)))


def wide(labels: pd.DataFrame, column: str = "label") -> pd.DataFrame:
    """post_id x class frame of one labels column."""
    out = labels.pivot(index="post_id", columns="harm_class", values=column)
    return out[list(classes(labels))]


def known_labels(labels: pd.DataFrame, reports: pd.DataFrame, human: pd.DataFrame | None = None,
                 min_reports: int = 2) -> pd.DataFrame:
    """What the platform knows per post and class: the human label where reviewed, else a natural label.

    A natural positive is a post ``min_reports`` users reported for the class: one report is as often a
    grudge or a look-alike as harm. ``human`` is the review queue's labels (item_id, class, label): they
    override both.
    """
    truth = wide(labels)
    reviewed = wide(labels, "reviewed").astype(bool)
    counts = (reports.assign(hit=1).pivot_table(index="post_id", columns="harm_class", values="hit",
                                                aggfunc="sum", fill_value=0)
              .reindex(index=truth.index, columns=truth.columns, fill_value=0))
    known = truth.where(reviewed, (counts >= min_reports).astype("int64")).astype("int64")
    if human is not None and len(human):
        h = human[human["class"].isin(known.columns) & human["item_id"].isin(known.index)]
        for (post, cls), value in h.groupby(["item_id", "class"])["label"].last().items():
            known.loc[post, cls] = int(value)
    return known


def human_count(human: pd.DataFrame | None, labels: pd.DataFrame) -> int:
    """How many queue labels name a post and class of this data (the ones training used)."""
    if human is None or not len(human):
        return 0
    return int((human["item_id"].isin(labels["post_id"]) & human["class"].isin(classes(labels))).sum())
