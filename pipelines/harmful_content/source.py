"""Where harmful-content data comes from: the simulator one window at a time, or a user's file of posts.

A file (CSV or Parquet) has one row per post: ``text``; optionally ``post_id``, ``author_id``,
``created_at``, an image embedding ``img_00`` .. ``img_15`` and counts ``followers``, ``views``, ``likes``,
``comments``; and one 0/1 column per harm class: every other column is a class, named by its header.
Its labels are accurate (human) labels, so every row is ``reviewed``. Without ``post_id`` a post's id is
a hash of its content; without ``author_id`` each post is its own author (no history); without
``created_at`` rows are a minute apart in file order. Problems that stop the mapping raise
``ValueError`` naming the file and column; ranges, nulls and duplicates are the validation gate's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.files import empty, examples, ids, read_table, require, timestamps, users_from_log
from pipelines.harmful_content.schema import IMAGE_COLUMNS, MAX_TEXT_CHARS, REPORTS
from pipelines.world.harmful_content import HarmfulContentWorld
from pipelines.world.population import EPOCH, SCALES

ENGAGEMENT = ("followers", "views", "likes", "comments")
"""Optional counts a platform's export often carries: the author's followers, the post's engagement."""
POST_COLUMNS = ("post_id", "author_id", "created_at", "text", *IMAGE_COLUMNS, *ENGAGEMENT)
CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tables of one simulated window; reports after the window's end have not arrived yet."""
    return HarmfulContentWorld(seed=run.params.seed, scale=SCALES[run.params.scale]).window(start_day, n_days, drift)


def read_files(run: Run, files: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    return read_posts(Path(files["posts"]))


def read_posts(path: Path) -> dict[str, pd.DataFrame]:
    """users, posts, (no) reports and labels of a file of labeled posts."""
    raw = read_table(path, "posts")
    require(raw, path, "posts", ("text",))
    classes = [c for c in raw.columns if c not in POST_COLUMNS]
    if not classes:
        raise ValueError(f"posts file {path} has no class column: add one 0/1 column per harm class "
                         f"(e.g. violence, spam) beside {', '.join(c for c in POST_COLUMNS if c in raw)}")
    bad = [c for c in classes if not CLASS_NAME.match(c)]
    if bad:
        raise ValueError(f"posts file {path}: class column name(s) {bad} must be lower-case letters, digits and _ "
                         f"(starting with a letter, at most 40); {NOT_A_CLASS}")
    not_binary = [c for c in classes if not pd.to_numeric(raw[c], errors="coerce").isin([0, 1]).any()]
    if not_binary:
        raise ValueError(f"posts file {path}: column(s) {not_binary} hold no 0/1 value, so they are no harm class; "
                         f"{NOT_A_CLASS}")
    n = len(raw)
    text = raw["text"].astype("string")
    if text.isna().any():
        raise ValueError(f"{path}: column 'text' is empty in {int(text.isna().sum())} rows; every post needs text")
    created = (timestamps(raw["created_at"], path, "created_at") if "created_at" in raw
               else EPOCH + pd.to_timedelta(np.arange(n), unit="min"))
    posts = pd.DataFrame({"text": text.str.slice(0, MAX_TEXT_CHARS).astype(object), "created_at": created})
    posts["post_id"] = (ids(raw["post_id"], path, "post_id") if "post_id" in raw else _content_ids(posts))
    posts["author_id"] = (ids(raw["author_id"], path, "author_id") if "author_id" in raw
                          else posts["post_id"] % (2**62) + 1)
    posts["scored_at"] = posts["created_at"]
    present = [c for c in IMAGE_COLUMNS if c in raw]
    if present and len(present) != len(IMAGE_COLUMNS):
        raise ValueError(f"posts file {path} has image columns {present[:3]}...: give all of "
                         f"{IMAGE_COLUMNS[0]}..{IMAGE_COLUMNS[-1]} or none")
    for c in present:
        posts[c] = _numbers(raw[c], path, c)
    counts = [c for c in ENGAGEMENT if c in raw]
    for c in counts:
        posts[c] = _counts(raw[c], path, c)
    labels = pd.concat([pd.DataFrame({"post_id": posts["post_id"], "harm_class": c,
                                      "label": _binary(raw[c], path, c), "reviewed": 1}) for c in classes],
                       ignore_index=True)
    posts = posts[["post_id", "author_id", "created_at", "scored_at", "text", *present, *counts]]
    users = users_from_log(posts.rename(columns={"author_id": "user_id", "created_at": "event_timestamp"}))
    return {"users": users, "posts": posts, "reports": empty(REPORTS), "labels": labels}


NOT_A_CLASS = (f"every column other than {', '.join(POST_COLUMNS[:4])}, img_NN and {', '.join(ENGAGEMENT)} is read "
               "as a harm class (0/1): drop the column(s) that are not classes")


def _content_ids(posts: pd.DataFrame) -> np.ndarray:
    """An id from the post itself (text, time and which repeat), so rereading a file gives the same ids."""
    key = posts[["text", "created_at"]].assign(repeat=posts.groupby(["text", "created_at"]).cumcount())
    return (pd.util.hash_pandas_object(key, index=False).to_numpy() >> np.uint64(2)).astype(np.int64)


def _binary(values: pd.Series, path: Path, column: str) -> pd.Series:
    number = pd.to_numeric(values, errors="coerce")
    bad = ~number.isin([0, 1])
    if bad.any():
        raise ValueError(f"{path}: class column {column!r} must hold 0 or 1; {int(bad.sum())} rows do not, e.g. "
                         f"{examples(values[bad].astype(object))}")
    return number.astype(np.int64)


def _counts(values: pd.Series, path: Path, column: str) -> pd.Series:
    number = pd.to_numeric(values, errors="coerce")
    bad = number.isna() | (number < 0) | (number % 1 != 0)
    if bad.any():
        raise ValueError(f"{path}: column {column!r} must hold counts (whole numbers >= 0); {int(bad.sum())} rows "
                         f"do not, e.g. {examples(values[bad].astype(object))}")
    return number.astype(np.int64)


def _numbers(values: pd.Series, path: Path, column: str) -> pd.Series:
    number = pd.to_numeric(values, errors="coerce")
    bad = number.isna() | ~np.isfinite(number)
    if bad.any():
        raise ValueError(f"{path}: image column {column!r} must hold finite numbers; {int(bad.sum())} rows do not, "
                         f"e.g. {examples(values[bad].astype(object))}")
    return number.astype(np.float64)
