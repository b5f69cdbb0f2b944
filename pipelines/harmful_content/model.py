"""Harmful content models: an early-fusion multi-task network and a per-class text-only baseline.

Early fusion: the post's text features (the pluggable encoder's), its image embedding, the author's
history and the post's engagement and reports are concatenated into one input; shared layers learn one
representation of the post and one head per harm class reads it. The classes share what makes a post
harmful in general (a bad actor, an engaged-and-reported post) and each head keeps what is its own.

Imbalance: per-class positive weights ``sqrt(negatives / positives)`` in the log loss, not focal loss.
Focal loss pays off when a flood of easy negatives swamps the gradient (dense detection); here the rare
positives are the problem, and a weighted log loss keeps a proper scoring rule: its optimum is the true
odds times the weight, so subtracting ``log(weight)`` from the logit gives calibrated probabilities
back for free, which thresholds and the prevalence estimate need. The square root (not the full ratio)
keeps the rarest class (a few hundred positives) from overfitting to its handful of examples.

Thresholds per class are chosen on the validation window and stored in the model, so the service
enforces exactly what was evaluated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.training import EarlyStopping
from pipelines.harmful_content.schema import IMAGE_COLUMNS

NUMERIC = ("views", "likes", "comments", "post_reports", "author_posts", "author_followers")
"""Counts, fed as log1p; missing (a new post, an unknown author) is 0."""


def dense_features(frame: pd.DataFrame, violation_prior: float) -> np.ndarray:
    """Image embedding (zeros if absent), a has-image flag, log counts, the author's violation rate (logit)."""
    n = len(frame)
    cols = [c for c in IMAGE_COLUMNS if c in frame]
    image = (frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32) if len(cols) == len(IMAGE_COLUMNS)
             else np.full((n, len(IMAGE_COLUMNS)), np.nan, np.float32))
    has_image = ~np.isnan(image).any(axis=1)
    image = np.where(has_image[:, None], image, 0.0)
    counts = np.stack([np.log1p(pd.to_numeric(frame[c], errors="coerce").fillna(0).clip(lower=0).to_numpy(float))
                       if c in frame else np.zeros(n) for c in NUMERIC], axis=1) / 3.0
    rate = (pd.to_numeric(frame["author_violation_rate"], errors="coerce").fillna(violation_prior).to_numpy(float)
            if "author_violation_rate" in frame else np.full(n, violation_prior))
    rate = np.clip(rate, 1e-4, 1 - 1e-4)
    logit = np.log(rate / (1 - rate)) - np.log(violation_prior / (1 - violation_prior))
    return np.column_stack([image, has_image, counts, logit]).astype(np.float32)


REVIEW_ONLY = 1.01
"""A threshold above any probability: the action never fires."""


@dataclass(frozen=True)
class Thresholds:
    """Per class: remove at or above ``remove``; demote and queue for review at or above ``review``."""

    remove: float
    review: float
    rule: str = ""
    """How ``remove`` was chosen (or why the class is review-only), shown in the report."""

    @property
    def automatic_removal(self) -> bool:
        return self.remove <= 1.0


@dataclass
class HarmModel:
    """What the registry stores: classes, the text encoder, the predictor, calibration and thresholds."""

    kind: str  # "fusion" or "logistic"
    classes: tuple[str, ...]
    encoder: Any
    predictor: Any
    violation_prior: float
    log_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    thresholds: dict[str, Thresholds] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, classes) probabilities of each harm class."""
        texts = frame["text"].astype(str).tolist()
        return self.predict_encoded(self.encoder.encode(texts), dense_features(frame, self.violation_prior))

    def predict_encoded(self, text: Any, dense: np.ndarray) -> np.ndarray:
        if self.kind == "logistic":
            return np.column_stack([m.predict_proba(text)[:, 1] for m in self.predictor])
        import torch

        self.predictor.eval()
        with torch.inference_mode():
            logits = self.predictor(*_bags(text), torch.from_numpy(dense)).numpy()
        return 1.0 / (1.0 + np.exp(-(logits - self.log_weights)))

    def decide(self, probabilities: np.ndarray) -> tuple[str, str | None, float | None]:
        """One post's decision: (remove | review | allow, the deciding class, its threshold).

        Removal wins over review; among the classes over their threshold the one furthest above it decides.
        """
        for action in ("remove", "review"):
            over = [(p / getattr(self.thresholds[c], action), c) for c, p in zip(self.classes, probabilities,
                                                                                  strict=True)
                    if p >= getattr(self.thresholds[c], action)]
            if over:
                cls = max(over)[1]
                return action, cls, getattr(self.thresholds[cls], action)
        return "allow", None, None


def _bags(text: Any) -> tuple[Any, Any, Any]:
    """A CSR matrix (or dense array) as EmbeddingBag input: column ids, row offsets, values as weights."""
    import torch
    from scipy import sparse

    csr = sparse.csr_matrix(text, dtype=np.float32)
    return (torch.from_numpy(csr.indices.astype(np.int64)), torch.from_numpy(csr.indptr[:-1].astype(np.int64)),
            torch.from_numpy(csr.data))


def build_fusion(text_dim: int, dense_dim: int, classes: tuple[str, ...], hidden: list[int], dropout: float) -> Any:
    """The early-fusion network: one projection of [text | image | author | engagement], shared layers, heads."""
    import torch
    from torch import nn

    class EarlyFusion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # One linear layer over the concatenated input, split in two only because text is sparse:
            # the text part is an EmbeddingBag (weighted sum of the rows of the n-grams present).
            self.text = nn.EmbeddingBag(text_dim, hidden[0], mode="sum", sparse=True)
            nn.init.normal_(self.text.weight, std=0.01)
            self.dense = nn.Linear(dense_dim, hidden[0])
            layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
            for a, b in itertools.pairwise(hidden):
                layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
            self.shared = nn.Sequential(*layers)
            self.heads = nn.ModuleDict({c: nn.Linear(hidden[-1], 1) for c in classes})

        def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor,
                    dense: torch.Tensor) -> torch.Tensor:
            fused = self.text(ids, offsets, per_sample_weights=weights) + self.dense(dense)
            shared = self.shared(fused)
            return torch.cat([head(shared) for head in self.heads.values()], dim=1)

    return EarlyFusion()


def train_fusion(text: Any, dense: np.ndarray, y: np.ndarray, valid: tuple[Any, np.ndarray, np.ndarray],
                 model: HarmModel, params: dict[str, Any], seed: int) -> HarmModel:
    """Adam on the weighted multi-task log loss, early stopping on the validation window's macro PR-AUC.

    One intra-op thread: multi-threaded CPU reductions are not bit-reproducible, and the small
    batches gain nothing from threads on a two-core machine.
    """
    import torch

    from pipelines.core.threads import torch_threads

    with torch_threads(1):
        torch.manual_seed(seed)
        pos = y.sum(axis=0).clip(min=1)
        weights = np.sqrt((len(y) - pos) / pos).astype(np.float32)
        model.log_weights = np.log(weights)
        net = build_fusion(text.shape[1], dense.shape[1], model.classes, list(params["hidden"]), params["dropout"])
        model.predictor = net
        text_opt = torch.optim.SparseAdam([net.text.weight], lr=params["lr"])  # only the n-grams in a batch
        opt = torch.optim.Adam([q for q in net.parameters() if q is not net.text.weight], lr=params["lr"],
                               weight_decay=params["weight_decay"])
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(weights))
        ty, td = torch.from_numpy(y.astype(np.float32)), torch.from_numpy(dense)
        gen = torch.Generator().manual_seed(seed)
        stopper = EarlyStopping(params["patience"], 1e-4, lower_is_better=False)
        for _ in range(params["epochs"]):
            net.train()
            for batch in torch.randperm(len(y), generator=gen).split(params["batch_size"]):
                rows = batch.numpy()
                opt.zero_grad()
                text_opt.zero_grad()
                loss = loss_fn(net(*_bags(text[rows]), td[batch]), ty[batch])
                loss.backward()
                opt.step()
                text_opt.step()
            if stopper.check(macro_pr_auc(valid[2], model.predict_encoded(valid[0], valid[1])), net):
                break
        stopper.restore(net)
        return model


def train_logistic(text: Any, y: np.ndarray, model: HarmModel, c: float) -> HarmModel:
    """The baseline: one L2 logistic regression per class on the text features alone."""
    from sklearn.linear_model import LogisticRegression

    model.predictor = [LogisticRegression(C=c, max_iter=500, solver="liblinear").fit(text, y[:, j])
                       if 0 < y[:, j].sum() < len(y) else _Constant(float(y[:, j].mean()))
                       for j in range(y.shape[1])]
    return model


@dataclass
class _Constant:
    """A class with no positive (or no negative) in training: its observed rate, for every post."""

    p: float

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.tile([1 - self.p, self.p], (x.shape[0], 1))


def macro_pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean PR-AUC (average precision) over the classes with at least one positive."""
    from sklearn.metrics import average_precision_score

    scores = [average_precision_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if y[:, j].any()]
    return float(np.mean(scores)) if scores else float("nan")


def precision_lower_bound(hits: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a precision ``hits / n`` at ``confidence`` (0 if no hit)."""
    from scipy.stats import beta

    hits, n = np.asarray(hits, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1 - confidence, hits, n - hits + 1)
    return np.where(hits > 0, np.nan_to_num(bound), 0.0)


def choose_thresholds(y: np.ndarray, p: np.ndarray, classes: tuple[str, ...], remove_precision: float,
                      review_precision: float, confidence: float) -> dict[str, Thresholds]:
    """Per class, the lowest removal score whose precision *lower bound* on validation reaches the target.

    The point precision of the top few posts is luck: 5 of 5 is 100% and says little about the next
    window. So removal needs the one-sided Clopper-Pearson bound at ``confidence`` to reach the target;
    a class where no threshold does (too few validation positives, or too many look-alikes at the top)
    is review-only: never removed automatically, its clear cases go to the review queue like the rest.
    The review band opens at the lowest score whose point precision reaches ``review_precision``.
    """
    out = {}
    for j, c in enumerate(classes):
        order = np.argsort(-p[:, j], kind="stable")
        score, hit = p[order, j], y[order, j].astype(float)
        last = np.r_[score[1:] != score[:-1], True]  # a threshold keeps every post tied with it
        tp, n, cut = np.cumsum(hit)[last], np.arange(1, len(score) + 1)[last], score[last]
        bound = precision_lower_bound(tp, n, confidence)
        ok = np.flatnonzero(bound >= remove_precision)
        review_ok = np.flatnonzero((tp > 0) & (tp / n >= review_precision))
        review = float(cut[review_ok[-1]]) if len(review_ok) else REVIEW_ONLY
        if len(ok):
            k = ok[-1]
            rule = (f"remove: validation precision lower bound {bound[k]:.3f} >= {remove_precision} "
                    f"(Clopper-Pearson, one-sided {confidence:.0%}; {int(tp[k])} of {int(n[k])} posts harmful)")
            out[c] = Thresholds(remove=float(cut[k]), review=min(review, float(cut[k])), rule=rule)
        else:
            best = int(np.argmax(bound)) if len(bound) else 0
            rule = (f"review-only: no validation threshold's precision lower bound reaches {remove_precision} "
                    f"(Clopper-Pearson, one-sided {confidence:.0%}; best {bound[best] if len(bound) else 0:.3f}, "
                    f"{int(hit.sum())} validation positives)")
            out[c] = Thresholds(remove=REVIEW_ONLY, review=review, rule=rule)
    return out
