"""The shared homes and social graph: homophily, triadic closure, determinism and growth over time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.world.population import EPOCH, SCALES, World, make_population
from pipelines.world.social import CITY_NAMES, haversine_km


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=3, scale=SCALES["tiny"])


def test_homes_are_near_a_city_of_the_users_country(world: World) -> None:
    homes, users = world.homes, world.population.users
    centre = {"new_york": (40.71, -74.01), "tokyo": (35.68, 139.69)}
    for city, (lat, lon) in centre.items():
        mine = CITY_NAMES[homes.city] == city
        assert mine.sum() > 10
        assert np.median(haversine_km(lat, lon, homes.lat[mine], homes.lon[mine])) < 15
    us = users["country"].to_numpy() == "US"
    assert set(CITY_NAMES[homes.city[us]]) <= {"new_york", "los_angeles", "chicago"}


def test_friendships_are_homophilous_by_city_age_and_workplace(world: World) -> None:
    e, h = world.social.edges, world.homes
    u, v = e["user_id"].to_numpy() - 1, e["friend_id"].to_numpy() - 1
    rng = np.random.default_rng(0)
    ru, rv = rng.integers(0, world.population.n, len(u)), rng.integers(0, world.population.n, len(u))
    age = world.population.users["age"].to_numpy()
    assert (h.city[u] == h.city[v]).mean() > 0.7 > 3 * (h.city[ru] == h.city[rv]).mean()
    assert np.abs(age[u] - age[v]).mean() < 0.75 * np.abs(age[ru] - age[rv]).mean()
    school = (h.school[u] == h.school[v]) & (h.school[u] >= 0)
    assert school.mean() > 20 * ((h.school[ru] == h.school[rv]) & (h.school[ru] >= 0)).mean()


def test_triadic_closure_new_edges_often_close_a_triangle(world: World) -> None:
    """An edge formed after day 0 joins two users with a common friend far more often than chance."""
    g = world.social
    before = g.adjacency(EPOCH)
    new = g.between(EPOCH, EPOCH + pd.Timedelta(days=10))
    u, v = new["user_id"].to_numpy() - 1, new["friend_id"].to_numpy() - 1
    common = np.asarray(before[u].multiply(before[v]).sum(axis=1)).ravel()
    rng = np.random.default_rng(1)
    ru, rv = rng.integers(0, g.pop.n, len(u)), rng.integers(0, g.pop.n, len(u))
    chance = np.asarray(before[ru].multiply(before[rv]).sum(axis=1)).ravel()
    assert (common > 0).mean() > 0.3 > 5 * (chance > 0).mean()


def test_the_graph_grows_and_is_the_same_for_a_seed(world: World) -> None:
    g = world.social
    sizes = [g.adjacency(EPOCH + pd.Timedelta(days=d)).nnz for d in (0, 5, 10)]
    assert sizes[0] < sizes[1] < sizes[2]
    again = World(seed=3, scale=SCALES["tiny"]).social.edges
    pd.testing.assert_frame_equal(g.edges, again)
    assert not World(seed=4, scale=SCALES["tiny"]).social.edges.equals(g.edges)
    e = g.edges
    assert (e["user_id"] < e["friend_id"]).all() and not e.duplicated(["user_id", "friend_id"]).any()
    signup = world.population.users.set_index("user_id")["signup_ts"]
    assert (e["created_ts"].to_numpy() >= np.maximum(signup.loc[e["user_id"]].to_numpy(),
                                                     signup.loc[e["friend_id"]].to_numpy())).all()


def test_adding_the_graph_changes_nothing_the_population_draws() -> None:
    """Homes and friendships use their own generators: every earlier world is unchanged for a seed."""
    w = World(seed=3, scale=SCALES["tiny"])
    before = make_population(w.scale.n_users, 3, window_days=w.scale.days + 7).users
    _ = w.social.edges
    pd.testing.assert_frame_equal(w.population.users, before)


def test_partner_probability_is_a_distribution(world: World) -> None:
    g = world.social
    p = g.partner_probability(0, np.arange(g.pop.n), EPOCH)
    assert p.min() >= 0 and p.sum() == pytest.approx(1.0, abs=0.05)
