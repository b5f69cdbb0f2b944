"""Validated images -> the ``image_metadata`` feature table: what re-ranking reads online per result.

``dup_group`` is computed from content: catalog images whose pixels (mean-centred, cosine) are at least
``rerank.duplicate_similarity`` alike share a group, named by its smallest image id, so re-uploads of
one picture collapse to one result.
"""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.visual_search.images import from_png_b64, near_duplicate_groups
from pipelines.visual_search.source import image_format

SERVICE = "visual_search_v1"


def build(run: Run) -> dict[str, pd.DataFrame]:
    images = run.validated("images")
    catalog = images[images["split"] == "catalog"].reset_index(drop=True)
    return {"image_metadata": metadata_table(catalog, from_png_b64(catalog["png"].to_numpy(), image_format(run)),
                                             run.params.rerank.duplicate_similarity)}


def metadata_table(catalog: pd.DataFrame, pixels: object, threshold: float) -> pd.DataFrame:
    import numpy as np

    ids = catalog["image_id"].to_numpy()
    groups = ids[near_duplicate_groups(np.asarray(pixels), threshold)] if len(ids) else ids
    return pd.DataFrame({"image_id": ids, "owner_id": catalog["owner_id"].to_numpy(),
                         "private": catalog["private"].to_numpy(), "dup_group": groups.astype("int64"),
                         "upload_ts": catalog["upload_ts"].astype("int64") // 10**9,
                         "event_timestamp": catalog["upload_ts"]})
