"""Pluggable text encoders: texts -> one feature row each, the same code for training and serving.

``encoder("hashed")`` is the local default: hashed word 1-2-grams and character 2-4-grams within word
boundaries (scikit-learn's ``HashingVectorizer``). It needs no download and no fitting, so training and
serving agree by construction, and character n-grams still match most of an obfuscated word
("k1ll" shares "ll" and " k" with "kill"). ``encoder("sentence-transformers:<name or local path>")``
loads a pretrained sentence-transformers model; that package is optional and never installed by
default, and nothing is ever downloaded at run time (``HF_HUB_OFFLINE=1``): a name must already be in
the local Hugging Face cache, or give a folder.

No torch is imported here: a case that only hashes text does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

SENTENCE_TRANSFORMERS = "sentence-transformers:"


class TextEncoder(Protocol):
    """What a model needs from an encoder: a stable name (stored with the model), a width, ``encode``."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> Any:
        """One row per text: a ``scipy.sparse`` CSR matrix or a dense float32 array, ``(len(texts), dim)``."""


@dataclass
class HashedNgrams:
    """Hashed word and character n-grams, L2-normalised per part; stateless, so nothing to fit or ship."""

    n_features: int = 2**15
    name: str = "hashed"
    _parts: tuple[Any, ...] = field(default=(), init=False, repr=False)

    @property
    def dim(self) -> int:
        return 2 * self.n_features

    def encode(self, texts: list[str]) -> Any:
        from scipy import sparse

        if not self._parts:
            from sklearn.feature_extraction.text import HashingVectorizer

            common = {"n_features": self.n_features, "alternate_sign": False, "lowercase": True,
                      "dtype": np.float32}
            self._parts = (HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common),
                           HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), **common))
        return sparse.hstack([p.transform(texts) for p in self._parts], format="csr")


@dataclass
class SentenceTransformerEncoder:
    """A pretrained sentence-transformers model, loaded lazily from the local cache or a folder."""

    model: str
    batch_size: int = 64
    _loaded: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return SENTENCE_TRANSFORMERS + self.model

    def _model(self) -> Any:
        if self._loaded is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ValueError(f"text encoder {self.name!r} needs the optional package sentence-transformers, "
                                 "which is not installed: `pip install sentence-transformers`, or use the "
                                 "default encoder 'hashed'") from exc
            try:
                self._loaded = SentenceTransformer(self.model, local_files_only=True)
            except OSError as exc:
                raise ValueError(f"text encoder {self.name!r}: no local copy of {self.model!r} (downloads are off); "
                                 f"give a folder that holds the model: {str(exc).splitlines()[0]}") from exc
        return self._loaded

    @property
    def dim(self) -> int:
        return int(self._model().get_sentence_embedding_dimension())

    def encode(self, texts: list[str]) -> Any:
        out = self._model().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:  # a pickled model stores the name, not the weights
        return {"model": self.model, "batch_size": self.batch_size, "_loaded": None}


def encoder(spec: str, n_features: int = 2**15) -> TextEncoder:
    """The encoder a params value names: ``hashed`` or ``sentence-transformers:<name or path>``."""
    if spec == "hashed":
        return HashedNgrams(n_features=n_features)
    if spec.startswith(SENTENCE_TRANSFORMERS) and len(spec) > len(SENTENCE_TRANSFORMERS):
        return SentenceTransformerEncoder(spec[len(SENTENCE_TRANSFORMERS):])
    raise ValueError(f"unknown text encoder {spec!r}; use 'hashed' or 'sentence-transformers:<model name or path>'")
