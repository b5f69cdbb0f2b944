"""The harmful content bodies of train, evaluate and monitor scoring; the core runs them as the flow's steps.

Train reads point-in-time features for every post as of the moment it was scored, splits by time,
labels the training window with what the platform knows (human labels where reviewed or queued, user
reports elsewhere) and the later windows with their audit, fits the text baseline and the fusion
network, and sets each class's thresholds on the validation window. Evaluate scores any model on the
test window beside the baseline and the oracle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.core import feast
from pipelines.core.case import Report, Run, Trained
from pipelines.harmful_content.labels import classes, human_count, known_labels, wide
from pipelines.harmful_content.model import HarmModel, choose_thresholds, dense_features, macro_pr_auc
from pipelines.harmful_content.schema import IMAGE_COLUMNS

SYSTEMS = ("baseline", "model", "oracle")


def feature_frame(run: Run, posts: pd.DataFrame) -> pd.DataFrame:
    """Each post with its Feast features as of its scoring moment (author = the shared ``user``)."""
    entities = pd.DataFrame({"post_id": posts["post_id"].to_numpy(), "user_id": posts["author_id"].to_numpy(),
                             "event_timestamp": posts["scored_at"].to_numpy()})
    features = feast.historical(run.store, entities, run.spec.features.service)
    own = posts.drop(columns=[c for c in ("views", "likes", "comments", "followers") if c in posts])
    return own.merge(features.drop(columns=["event_timestamp", "user_id"]), on="post_id", how="left")


def _split(frame: pd.DataFrame, valid_share: float, test_share: float) -> tuple[pd.DataFrame, ...]:
    """Train on the oldest posts, validate on the next, test on the newest (by creation time)."""
    t = frame["created_at"]
    valid_at, test_at = t.quantile(1 - valid_share - test_share), t.quantile(1 - test_share)
    parts = frame[t < valid_at], frame[(t >= valid_at) & (t < test_at)], frame[t >= test_at]
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"{len(frame)} posts are too few to split by time into train, valid and test")
    return tuple(p.reset_index(drop=True) for p in parts)


def human_labels(run: Run) -> pd.DataFrame | None:
    """The review queue's labels (``casebook review harmful_content label``), if a reviewer gave any."""
    from pipelines.core.review import labels_file

    file = labels_file(run.paths, run.case)
    return pd.read_parquet(file) if file.exists() else None


def train(run: Run) -> Trained:
    """PIT training set from Feast, time split, baseline + fusion model, thresholds on the validation window."""
    from pipelines.core.text import encoder
    from pipelines.harmful_content import model as m

    p = run.params
    labels, reports = run.validated("labels"), run.validated("reports")
    names = classes(labels)
    frame = feature_frame(run, run.validated("posts"))
    tr, va, te = _split(frame, p.split.valid_share, p.split.test_share)
    human = human_labels(run)
    known = known_labels(labels, reports, human)
    truth = wide(labels)
    y_tr = known.reindex(tr["post_id"]).fillna(0).to_numpy(np.int64)
    y_va = truth.reindex(va["post_id"]).fillna(0).to_numpy(np.int64)
    enc = encoder(p.text.encoder, p.text.n_features)
    text = {k: enc.encode(f["text"].astype(str).tolist()) for k, f in (("tr", tr), ("va", va))}
    model = HarmModel("fusion", names, enc, None, p.violation_prior)
    dense = {k: dense_features(f, p.violation_prior) for k, f in (("tr", tr), ("va", va))}
    baseline = m.train_logistic(text["tr"], y_tr, HarmModel("logistic", names, enc, None, p.violation_prior),
                                p.logistic.c)
    model = m.train_fusion(text["tr"], dense["tr"], y_tr, (text["va"], dense["va"], y_va), model,
                           p.fusion.model_dump(), p.seed)
    t = p.thresholds
    for fitted in (baseline, model):
        fitted.thresholds = choose_thresholds(y_va, fitted.predict_encoded(text["va"], dense["va"]), names,
                                              t.remove_precision, t.review_precision, t.confidence)
    first_report = reports.groupby("post_id")["reported_at"].min()
    test = te.assign(first_report_at=te["post_id"].map(first_report))
    for c in names:
        test[f"y_{c}"] = truth[c].reindex(te["post_id"]).fillna(0).to_numpy(np.int64)
    if "p_true" in labels:
        oracle = wide(labels, "p_true")
        for c in names:
            test[f"oracle_{c}"] = oracle[c].reindex(te["post_id"]).to_numpy(float)
    scores = baseline.predict(te)
    for j, c in enumerate(names):
        test[f"baseline_{c}"] = scores[:, j]
    lineage = {"feature_service": run.spec.features.service, "batches": run.batches("posts"), "classes": list(names),
               "rows": {"train": len(tr), "valid": len(va), "test": len(te)},
               "train_positives": dict(zip(names, y_tr.sum(axis=0).tolist(), strict=True)),
               "human_labels_from_review": human_count(human, labels.loc[labels["post_id"].isin(tr["post_id"])]),
               "baseline_thresholds": {c: vars(v) for c, v in baseline.thresholds.items()},
               "thresholds": {c: vars(v) for c, v in model.thresholds.items()},
               "test_window": [str(te["created_at"].min()), str(te["created_at"].max())],
               "world": run.world.id, "params": p.model_dump(mode="json")}
    return Trained(model, lineage, artifacts={"test_set": test, "train_labels": known.reindex(tr["post_id"])
                                              .fillna(0).astype("int64").reset_index()})


def _per_class(y: np.ndarray, p: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {}
    for j, c in enumerate(names):
        has = 0 < y[:, j].sum() < len(y)
        out[c] = {"pr_auc": float(average_precision_score(y[:, j], p[:, j])) if has else float("nan"),
                  "roc_auc": float(roc_auc_score(y[:, j], p[:, j])) if has else float("nan")}
    return out


def _enforcement(y: np.ndarray, p: np.ndarray, model: HarmModel) -> dict[str, dict[str, float]]:
    """Per class at the stored thresholds: precision and recall of removal and of the review band."""
    out = {}
    for j, c in enumerate(model.classes):
        t = model.thresholds[c]
        removed, band = p[:, j] >= t.remove, (p[:, j] >= t.review) & (p[:, j] < t.remove)
        pos = int(y[:, j].sum())
        out[c] = {"positives": pos, "automatic_removal": t.automatic_removal, "rule": t.rule,
                  "remove_threshold": t.remove, "review_threshold": t.review,
                  "removed": int(removed.sum()), "queued": int(band.sum()),
                  "removal_precision": float(y[removed, j].mean()) if removed.any() else float("nan"),
                  "removal_recall": float(y[removed, j].sum() / pos) if pos else float("nan"),
                  "review_precision": float(y[band, j].mean()) if band.any() else float("nan"),
                  "review_recall": float(y[band, j].sum() / pos) if pos else float("nan")}
    return out


def _removal_target(enforcement: dict[str, dict[str, Any]], target: float, min_positives: int = 20
                    ) -> dict[str, Any]:
    """The issue's test: removal precision >= target for every class with ``min_positives`` test positives.

    A review-only class removes nothing, so it cannot miss the precision; it is listed, not hidden.
    """
    counted = [c for c, e in enforcement.items() if e["positives"] >= min_positives]
    review_only = [c for c, e in enforcement.items() if not e["automatic_removal"]]
    failing = [c for c in counted if c not in review_only and _test_precision(enforcement[c]) < target]
    return {"target": target, "min_positives": min_positives, "classes_counted": counted,
            "review_only": review_only, "failing": failing, "met": not failing}


def _note(cls: str, e: dict[str, Any]) -> str:
    """One class's threshold rule and what it did on the test window."""
    done = (f"test: removed {e['removed']} at precision {e['removal_precision']:.3f}" if e["removed"] else
            "test: removed none") if e["automatic_removal"] else "test: no automatic removal"
    return (f"{cls}: {e['rule']}; {done}, queued {e['queued']} (review precision {e['review_precision']:.3f}); "
            f"{e['positives']} test positives")


def _verdict(target: dict[str, Any]) -> str:
    counted = ", ".join(target["classes_counted"]) or "none"
    only = ", ".join(target["review_only"]) or "none"
    state = "met" if target["met"] else f"NOT met by {', '.join(target['failing'])}"
    return (f"removal precision >= {target['target']} for every class with {target['min_positives']}+ test "
            f"positives ({counted}): {state}; review-only (no automatic removal): {only}")


def _test_precision(e: dict[str, Any]) -> float:
    """A removing class's test precision; removing nothing in the test window is no false removal (1.0)."""
    return e["removal_precision"] if e["removed"] else 1.0


def _proactive_rate(test: pd.DataFrame, y: np.ndarray, p: np.ndarray, model: HarmModel) -> float:
    """Of the harmful posts the platform learned about, the share the system flagged before any user report."""
    flagged = np.zeros(len(test), bool)
    for j, c in enumerate(model.classes):
        flagged |= p[:, j] >= model.thresholds[c].review
    harmful = y.any(axis=1)
    reported_first = test["first_report_at"].notna().to_numpy() & (
        test["first_report_at"] <= test["scored_at"]).fillna(False).to_numpy(bool)
    proactive = harmful & flagged & ~reported_first
    reactive = harmful & ~proactive & test["first_report_at"].notna().to_numpy()
    known = proactive.sum() + reactive.sum()
    return float(proactive.sum() / known) if known else float("nan")


def evaluate(run: Run, model: Any) -> Report:
    """PR-AUC and ROC-AUC per class and macro for baseline, model and oracle; enforcement at the thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    test = pd.read_parquet(run.work("artifacts") / "test_set.parquet")
    names = model.classes
    if any(f"y_{c}" not in test for c in names):
        raise RuntimeError(f"the model's classes {list(names)} are not this data's")
    y = test[[f"y_{c}" for c in names]].to_numpy(np.int64)
    scores = {"baseline": test[[f"baseline_{c}" for c in names]].to_numpy(float), "model": model.predict(test)}
    if all(f"oracle_{c}" in test for c in names):
        scores["oracle"] = test[[f"oracle_{c}" for c in names]].to_numpy(float)
    out: dict[str, Any] = {}
    per_class = {k: _per_class(y, v, names) for k, v in scores.items()}
    for k in scores:
        row = {"macro_pr_auc": macro_pr_auc(y, scores[k]),
               "macro_roc_auc": float(np.nanmean([per_class[k][c]["roc_auc"] for c in names]))}
        out[k] = row | {f"pr_auc_{c}": per_class[k][c]["pr_auc"] for c in names}
    out["per_class"] = per_class
    out["model_lift_over_baseline"] = out["model"]["macro_pr_auc"] / out["baseline"]["macro_pr_auc"] - 1
    if "oracle" in out:
        out["model_gap_to_oracle"] = 1 - out["model"]["macro_pr_auc"] / out["oracle"]["macro_pr_auc"]
    out["enforcement"] = _enforcement(y, scores["model"], model)
    out["removal_target"] = _removal_target(out["enforcement"], run.params.thresholds.remove_precision)
    out["notes"] = [_note(c, e) for c, e in out["enforcement"].items()] + [_verdict(out["removal_target"])]
    out["prevalence"] = {c: {"true": float(y[:, j].mean()), "estimated": float(scores["model"][:, j].mean())}
                         for j, c in enumerate(names)}
    out["proactive_rate"] = _proactive_rate(test, y, scores["model"], model)
    out["coverage"] = {"posts": len(test), "harmful_posts": int(y.any(axis=1).sum()),
                       "authors": int(test["author_id"].nunique()),
                       **{f"{c}_positives": int(y[:, j].sum()) for j, c in enumerate(names)}}
    cols = min(len(names), 4)
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.6 * rows_n), squeeze=False)
    plot_rows = []
    for j, c in enumerate(names):
        ax = axes[j // cols][j % cols]
        for k, v in scores.items():
            if not y[:, j].any():
                continue
            precision, recall, _ = precision_recall_curve(y[:, j], v[:, j])
            ax.plot(recall, precision, label=f"{k} ({per_class[k][c]['pr_auc']:.3f})")
            step = max(1, len(recall) // 50)
            plot_rows += [{"class": c, "system": k, "recall": float(r), "precision": float(q)}
                          for r, q in zip(recall[::step], precision[::step], strict=True)]
        ax.set(title=f"{c} (prevalence {y[:, j].mean():.2%})", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
        ax.legend(fontsize=8)
    for j in range(len(names), rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    reference = monitoring_frame(test, scores["model"], y)
    return Report(out, plots={"pr_curves": fig}, plot_data={"pr_curves": plot_rows}, reference=reference)


def monitoring_frame(frame: pd.DataFrame, p: np.ndarray, y: np.ndarray | None) -> pd.DataFrame:
    """What monitoring compares: the model's inputs as numbers, the top class probability, any-harm truth."""
    out = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce").fillna(0).to_numpy(float)
                        for c in ("views", "likes", "comments", "post_reports", "author_posts", "author_followers",
                                  "author_violation_rate") if c in frame})
    out["text_chars"] = frame["text"].astype(str).str.len().to_numpy()
    out["non_letter_share"] = frame["text"].astype(str).str.count(r"[^a-z ]").to_numpy() / out["text_chars"].clip(1)
    for c in ("country", "language"):
        out[c] = frame[c].fillna("unknown").astype(str).to_numpy() if c in frame else "unknown"
    out["prediction"] = p.max(axis=1)
    if y is not None:
        out["harmful"] = y.any(axis=1).astype(np.int64)
    return out


def score_window(run: Run, model: Any, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The window's posts with author features from Feast and their own engagement and reports so far."""
    posts, reports = window["posts"], window["reports"]
    frame = feature_frame(run, posts)
    counts = reports[["post_id", "reported_at"]].merge(posts[["post_id", "scored_at"]], on="post_id")
    before = counts[counts["reported_at"] < counts["scored_at"]].groupby("post_id").size()
    frame["post_reports"] = frame["post_id"].map(before).fillna(0).astype(np.int64).to_numpy()
    for c in ("views", "likes", "comments"):
        if c in posts:
            frame[c] = posts.set_index("post_id")[c].reindex(frame["post_id"]).to_numpy()
    truth = wide(window["labels"]).reindex(frame["post_id"]).fillna(0)[list(model.classes)].to_numpy(np.int64)
    return monitoring_frame(frame, model.predict(frame), truth)


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """Moderate a known author's post and a cold-start author's post with an image embedding."""
    import httpx

    posts = run.validated("posts")
    known = posts.iloc[0]
    out: dict[str, Any] = {}
    bodies = {"known": {"user_id": int(known["author_id"]), "text": str(known["text"])[:1000]},
              "cold_start": {"user_id": 2**62, "text": "free followers now click here to win",
                             "image_embedding": [0.0] * len(IMAGE_COLUMNS)}}
    for name, body in bodies.items():
        r = httpx.post(f"{url}/moderate", json=body, timeout=30)
        r.raise_for_status()
        answer = r.json()
        probs = answer.get("probabilities", {})
        if answer.get("decision") not in ("remove", "review", "allow") or set(probs) != set(run.validated(
                "labels")["harm_class"].unique()) or not np.isfinite(list(probs.values())).all():
            raise RuntimeError(f"the harmful_content service answered {name} with no usable decision: {r.text[:300]}")
        out[name] = {"decision": answer["decision"], "decided_by": answer.get("decided_by")}
    out["status"] = 200
    return out
