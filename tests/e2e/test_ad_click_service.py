"""The ad click service over real HTTP: BentoML serving a registry champion on a materialized Feast store.

One session-scoped home is built here from a tiny simulated world (features, Feast apply + materialize,
a quick logistic model saved and promoted), without the rest of the pipeline, then served with
``running_service`` exactly as the deploy step starts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from pipelines import cases
from pipelines.ad_click.features import SERVICE, ad_profile_table, ctr_tables
from pipelines.ad_click.model import train_logistic
from pipelines.core import feast as core_feast
from pipelines.core import registry
from pipelines.core.features import write_user_profile
from pipelines.core.io import write_parquet
from pipelines.core.serving import build_bento, locked_versions, running_service
from pipelines.core.settings import TELEMETRY_OPT_OUT, Paths, load_params
from pipelines.world.ad_click import AdClickWorld
from pipelines.world.population import EPOCH, SCALES

pytestmark = pytest.mark.e2e

PRIOR = 0.03
AS_OF = EPOCH + pd.Timedelta(days=12)
"""Serving time: after the 10-day window, so every matured CTR snapshot is materialized."""


@dataclass(frozen=True)
class Home:
    paths: Paths
    tag: str
    users: pd.DataFrame
    ads: pd.DataFrame
    impressions: pd.DataFrame


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A CASEBOOK_HOME with features, a materialized online store and a promoted champion."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("casebook")
        mp.setenv("CASEBOOK_HOME", str(root))
        for key, value in TELEMETRY_OPT_OUT.items():
            mp.setenv(key, value)
        paths = Paths.from_env()
        world = AdClickWorld(seed=3, scale=SCALES["tiny"]).window(0, 10)
        imp = world["impressions"]
        write_user_profile(world["users"], paths, "ad_click")
        write_parquet(ad_profile_table(world["ads"]), paths.features("ad_click") / "ad_profile.parquet")
        for name, table in ctr_tables(imp, prior=PRIOR).items():
            write_parquet(table, paths.features("ad_click") / f"{name}.parquet")
        fs = core_feast.store(paths)
        core_feast.apply("ad_click", fs)
        first = world["users"]["signup_ts"].min().floor("D")  # the window comes from the data
        core_feast.materialize(fs, SERVICE, first.to_pydatetime(), AS_OF.to_pydatetime())

        entity = imp[["user_id", "ad_id", "event_timestamp", "position", "device", "hour", "clicked"]]
        frame = core_feast.historical(fs, entity, SERVICE)
        valid_from = EPOCH + pd.Timedelta(days=8)
        is_valid = frame["event_timestamp"] >= valid_from
        train, valid = frame[~is_valid], frame[is_valid]
        model = train_logistic(train, valid, prior=PRIOR, c=0.1)
        loss = log_loss(valid["clicked"].to_numpy(), model.predict(valid), labels=[0, 1])
        tag = registry.save("ad_click", model, metrics={"model": {"log_loss": loss}},
                            lineage={"world": "ad_click", "seed": 3, "scale": "tiny", "days": [0, 10]})
        registry.set_champion("ad_click", tag, metric="log_loss", value=loss, lower_is_better=True)
        yield Home(paths, tag, world["users"], world["ads"], imp)


@pytest.fixture(scope="module")
def service(home: Home) -> Iterator[str]:
    with running_service("ad_click") as url:
        yield url


def rank(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/rank", json=body, timeout=30)


def known_user(home: Home, where: Any = None) -> pd.Series:
    """A user with a profile and ad history (signed up before the window, so materialized)."""
    users = home.users[home.users["user_id"].isin(home.impressions["user_id"])]
    if where is not None:
        users = users[where(users)]
    return users.iloc[0]


def test_readyz_names_the_champion(home: Home, service: str) -> None:
    r = httpx.get(f"{service}/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model_tag": home.tag}
    assert httpx.get(f"{service}/metrics").status_code == 200


def test_rank_returns_top_k_sorted_probabilities(home: Home, service: str) -> None:
    user = known_user(home)
    candidates = [int(a) for a in home.ads["ad_id"].iloc[:40]]
    r = rank(service, user_id=int(user["user_id"]), candidate_ad_ids=candidates, k=5, device="desktop",
             hour=20)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_tag"] == home.tag and body["user_known"] is True
    p = [a["p_click"] for a in body["ads"]]
    assert 0 < len(p) <= 5
    assert p == sorted(p, reverse=True)
    assert all(0.0 < x < 1.0 for x in p)
    ids = [a["ad_id"] for a in body["ads"]]
    assert set(ids) <= set(candidates) and not set(ids) & set(body["filtered_out"])

    everything = rank(service, user_id=int(user["user_id"]), candidate_ad_ids=candidates, k=40).json()
    assert len(everything["ads"]) + len(everything["filtered_out"]) == len(candidates)


def test_unknown_user_and_unknown_ad_are_cold_start(home: Home, service: str) -> None:
    unknown_ad = int(home.ads["ad_id"].max()) + 1_000_000
    seen_ad = int(home.impressions["ad_id"].value_counts().index[0])  # the most shown ad has history
    r = rank(service, user_id=10**9, candidate_ad_ids=[seen_ad, unknown_ad])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_known"] is False and body["filtered_out"] == []
    flags = {a["ad_id"]: a["cold_start"] for a in body["ads"]}
    assert flags == {seen_ad: False, unknown_ad: True}
    assert all(0.0 < a["p_click"] < 1.0 for a in body["ads"])


def test_targeting_filters_country_and_age_for_known_users(home: Home, service: str) -> None:
    user = known_user(home, lambda u: u["age"].between(30, 40))
    country, age = user["country"], int(user["age"])
    ads = home.ads
    other_country = ads[(ads["target_country"] != "ANY") & (ads["target_country"] != country)]
    too_old = ads[(ads["target_country"] == "ANY") & (ads["max_age"] < age)]
    open_ads = ads[(ads["target_country"] == "ANY") & (ads["min_age"] <= age) & (ads["max_age"] >= age)]
    assert len(other_country) and len(open_ads), "tiny world should have targeted and untargeted ads"
    blocked = [int(other_country["ad_id"].iloc[0])] + [int(a) for a in too_old["ad_id"].iloc[:1]]
    allowed = [int(a) for a in open_ads["ad_id"].iloc[:3]]
    body = rank(service, user_id=int(user["user_id"]), candidate_ad_ids=blocked + allowed).json()
    assert sorted(body["filtered_out"]) == sorted(blocked)
    assert {a["ad_id"] for a in body["ads"]} == set(allowed)

    cold = rank(service, user_id=10**9, candidate_ad_ids=blocked).json()  # unknown user: no filter
    assert cold["filtered_out"] == [] and len(cold["ads"]) == len(blocked)


def test_service_scores_match_offline_features(home: Home, service: str) -> None:
    """No training/serving skew: online scores equal the model on point-in-time features as of serving."""
    user = known_user(home)
    seen = home.impressions.loc[home.impressions["user_id"] == user["user_id"], "ad_id"].unique()
    candidates = sorted({int(a) for a in seen} | {int(a) for a in home.ads["ad_id"].iloc[:10]})
    unknown = int(home.ads["ad_id"].max()) + 1  # its missing profile must not change the others' encoding
    body = rank(service, user_id=int(user["user_id"]), candidate_ad_ids=[*candidates, unknown],
                k=len(candidates) + 1, device="tablet", hour=7).json()
    served = {a["ad_id"]: a["p_click"] for a in body["ads"] if a["ad_id"] != unknown}
    assert len(served) + len(body["filtered_out"]) == len(candidates)
    entity = pd.DataFrame({"user_id": int(user["user_id"]), "ad_id": list(served), "event_timestamp": AS_OF})
    offline = core_feast.historical(core_feast.store(home.paths), entity, SERVICE)
    offline = offline.assign(position=1, device="tablet", hour=7)
    expected = registry.load(home.tag).predict(offline)  # type: ignore[attr-defined]
    got = offline["ad_id"].map(served).to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


MAX = int(load_params("ad_click").get("serving", {}).get("max_candidates", 100))
BAD_REQUESTS: dict[str, tuple[Any, str]] = {
    "too many candidates": ({"user_id": 1, "candidate_ad_ids": list(range(1, MAX + 2))}, "candidate_ad_ids"),
    "empty candidates": ({"user_id": 1, "candidate_ad_ids": []}, "candidate_ad_ids"),
    "duplicate candidates": ({"user_id": 1, "candidate_ad_ids": [3, 4, 3]}, "candidate_ad_ids"),
    "ad id zero": ({"user_id": 1, "candidate_ad_ids": [0]}, "candidate_ad_ids"),
    "k zero": ({"user_id": 1, "candidate_ad_ids": [1], "k": 0}, "k"),
    "k too large": ({"user_id": 1, "candidate_ad_ids": [1], "k": MAX + 1}, "k"),
    "hour 24": ({"user_id": 1, "candidate_ad_ids": [1], "hour": 24}, "hour"),
    "unknown device": ({"user_id": 1, "candidate_ad_ids": [1], "device": "watch"}, "device"),
    "string user id": ({"user_id": "abc", "candidate_ad_ids": [1]}, "user_id"),
    "numeric string user id": ({"user_id": "7", "candidate_ad_ids": [1]}, "user_id"),
    "user id beyond int64": ({"user_id": 2**63, "candidate_ad_ids": [1]}, "user_id"),
    "missing user id": ({"candidate_ad_ids": [1]}, "user_id"),
    "misspelt field": ({"user_id": 1, "candidate_ad_ids": [1], "top_k": 3}, "top_k"),
    "malformed JSON": (b'{"user_id": 1, "candidate_ad_ids": [1', "Invalid JSON"),
    "not an object": (b"[1, 2, 3]", "object"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_400_naming_the_problem(service: str, case: str) -> None:
    payload, names = BAD_REQUESTS[case]
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = httpx.post(f"{service}/rank", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert "validation error" in body["error"]
    locs = {str(d["loc"][0]) for d in body["detail"] if d["loc"]}
    messages = " ".join(d["msg"] for d in body["detail"])
    assert names in locs or names in messages, body


def test_bento_builds_from_the_generated_config(home: Home) -> None:
    tag = build_bento("ad_click", cases.spec("ad_click").serving_packages)
    assert tag.startswith("ad_click:")
    bento = home.paths.models / "bentos" / "ad_click" / tag.split(":")[1]
    assert "services.ad_click.service:AdClick" in (bento / "bento.yaml").read_text()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert f"torch=={locked_versions()['torch']}" in requirements
    # It carries the code the service imports and nothing else of the repository (built from a staged
    # context of the included files, not by walking the .venv).
    src = {p.relative_to(bento / "src").parts[0] for p in (bento / "src").rglob("*") if p.is_file()}
    assert src == {"pipelines", "services", "feature_repo", "params.yaml", "bentofile.yaml"}
    assert (bento / "src" / "services" / "ad_click" / "service.py").is_file()
    assert "PYTHONOPTIMIZE" in (bento / "bento.yaml").read_text()  # it serves as running_service does
    # The same code again: the Bento is reused, not rebuilt (it carries code; the model is loaded by tag).
    assert build_bento("ad_click", cases.spec("ad_click").serving_packages) == tag


def test_service_without_champion_fails_fast_with_the_reason(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    no_champion = "no champion model for case 'ad_click'"
    with pytest.raises(RuntimeError, match=no_champion), running_service("ad_click"):
        pass


def test_the_champion_pointer_names_what_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    case = "promote_test"
    with pytest.raises(LookupError, match="no champion model for case 'promote_test'"):
        registry.load_champion(case)
    tag = registry.save(case, {"loss": 0.25}, metrics={"model": {"log_loss": 0.25}}, lineage={})
    registry.set_champion(case, tag, metric="log_loss", value=0.25, lower_is_better=True, window=["a", "b"])
    assert registry.load_champion(case) == (tag, {"loss": 0.25})
    assert registry.info(tag)["metrics"] == {"model": {"log_loss": 0.25}}
    pointer = json.loads((tmp_path / "models" / "bentoml" / "champions.json").read_text())[case]
    assert pointer["tag"] == tag and pointer["value"] == 0.25 and pointer["window"] == ["a", "b"]

