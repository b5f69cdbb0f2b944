"""Visual search service: an uploaded image -> the most similar catalog images, over HTTP.

``POST /search`` takes the query image either as JSON (``{"image_b64": "<base64 of the file>", "k": 10}``)
or as a multipart upload (``-F image=@photo.jpg -F k=10``); any format Pillow reads, any size or mode up
to the limits (``serving.max_bytes``, ``serving.max_pixels``). The encoder embeds it, the Faiss index
returns the nearest catalog images, and re-ranking drops private images and blocked owners
(``exclude_owners``) and collapses near-duplicates, reading each image's metadata from Feast online.
The service only ever reads the bytes it was sent: it never opens a path or URL a caller names.
``GET /readyz`` answers 200 with the model tag once loaded; BentoML adds ``/metrics``, ``/livez``, the
Swagger UI at ``/`` and the OpenAPI spec at ``/docs.json``.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.visual_search.service:VisualSearch --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.core.api import EntityId
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params
from pipelines.visual_search.case import CASE as SPEC
from pipelines.visual_search.images import BadImage, ImageFormat, decode, to_png_b64

SERVING = serving_params(SPEC)


def _image_bytes(value: str) -> bytes:
    """Base64 -> bytes within the size limit; what is wrong becomes a 400 naming ``image_b64``."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 (send the image file's bytes, base64-encoded)") from None
    if len(data) > SERVING.max_bytes:
        raise ValueError(f"image is {len(data):,} bytes; at most {SERVING.max_bytes:,}")
    return data


class SearchRequest(BaseModel):
    """One query image; strict JSON types, so typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")
    UPLOADS: ClassVar[dict[str, str]] = {"image": "image_b64"}
    """Multipart part -> the JSON field it fills (base64): the core's edge accepts both forms."""

    image_b64: str = Field(min_length=1, max_length=4 * (SERVING.max_bytes // 3 + 1),
                           description="The image file (PNG, JPEG, ...), base64-encoded.")
    k: int = Field(default=SERVING.default_k, ge=1, le=SERVING.max_k, description="Images to return.")
    exclude_owners: list[EntityId] = Field(default_factory=list, max_length=SERVING.max_exclude_owners,
                                           description="Owners whose images must not be shown (blocked).")

    @field_validator("image_b64")
    @classmethod
    def _an_image(cls, value: str) -> str:
        try:
            decode(_image_bytes(value), ImageFormat(1, 1), SERVING.max_pixels)  # readable, sane dimensions
        except BadImage as exc:
            raise ValueError(str(exc)) from None
        return value


class Match(BaseModel):
    image_id: int
    rank: int
    score: float = Field(description="Cosine similarity of the embeddings (1 = the same image).")
    label: str | None = Field(description="The catalog image's label (its class folder).")


class SearchResponse(BaseModel):
    model_tag: str
    results: list[Match]


class Searcher(ChampionHandler):
    """The request path without HTTP: decode, embed, ANN, re-rank on online metadata."""

    case = SPEC
    cached_views = ("image_metadata",)

    def metadata(self, ids: list[int]) -> list[dict[str, Any] | None]:
        rows = self.reader.entity_rows(("image_id",), [(i,) for i in ids])
        return [row if row.get("dup_group") is not None else None for row in rows]

    def search(self, image_b64: str, k: int = SERVING.default_k, exclude_owners: list[int] | None = None
               ) -> SearchResponse:
        image = decode(_image_bytes(image_b64), self.model.fmt, SERVING.max_pixels)
        top = self.model.query(image, k, self.metadata, exclude_owners or ())
        return SearchResponse(model_tag=self.tag, results=[
            Match(image_id=i, rank=r, score=s, label=lab) for r, (i, s, lab) in enumerate(top, start=1)])

    def warm_up(self) -> None:
        fmt = self.model.fmt
        self.search(to_png_b64(np.zeros((fmt.channels, fmt.size, fmt.size), np.float32)), 1)


@bentoml.service(**service_options(SPEC))
class VisualSearch(CaseService):
    handler_type = Searcher
    search = handler_api("/search", SearchRequest, SearchResponse,
                         "The k catalog images most similar to the uploaded one (JSON base64 or multipart).")
