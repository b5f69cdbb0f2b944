"""People-you-may-know service: the precomputed list of a user, else an on-demand friends-of-friends ranking.

``POST /recommend`` answers ``{user_id, k}`` from the serving table the batch step wrote for the served
model (``source: "precomputed"``). A user without a list there (new, or inactive when it ran) gets friends
of friends ranked by Adamic-Adar on the same snapshot's graph (``source: "on_demand"``). The request may
name the user's friends now (``friends``): what the platform knows at request time and the snapshot does
not, such as a new user's first friends; they join the user's friends of the snapshot, so a new user is
answered from theirs. A user with no friend known either way gets an empty list (``source: "none"``).
Never the user, a friend or a blocked pair. ``GET /readyz`` answers with the model tag once loaded.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.people_you_may_know.service:PeopleYouMayKnow --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

from typing import Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from pipelines.core.api import EntityId
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params
from pipelines.core.settings import Paths
from pipelines.people_you_may_know.case import CASE as SPEC
from pipelines.people_you_may_know.graph import friends_of_friends
from pipelines.people_you_may_know.pipeline import STORE
from pipelines.people_you_may_know.store import ListStore

SERVING = serving_params(SPEC)


class RecommendRequest(BaseModel):
    """One request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The user to suggest people to.")
    k: int = Field(default=SERVING.default_k, ge=1, le=SERVING.max_k, description="People to return.")
    friends: list[EntityId] = Field(default_factory=list, max_length=SERVING.max_request_friends,
                                    description="The user's friends now, if the platform knows ones the batch "
                                                "snapshot does not (a new user's first friends): never suggested, "
                                                "and the fallback ranks their friends.")


class Person(BaseModel):
    user_id: int
    rank: int
    score: float = Field(description="The model's P(connect) (precomputed) or Adamic-Adar (on demand).")
    mutual_friends: int


class RecommendResponse(BaseModel):
    model_tag: str
    source: Literal["precomputed", "on_demand", "none"]
    people: list[Person]


class Recommender(ChampionHandler):
    """The request path without HTTP: the serving table's list, or the on-demand fallback."""

    case = SPEC
    _store: ListStore | None = None

    @property
    def store(self) -> ListStore:
        if self._store is None:
            self._store = ListStore(Paths.from_env().work(SPEC.name) / STORE)
            if not self.model.list_id or not self._store.has(self.model.list_id):
                raise LookupError(f"no precomputed list {self.model.list_id} for {self.tag} in {self._store.path}: "
                                  f"run `casebook run {SPEC.name} --step precompute`")
        return self._store

    def recommend(self, user_id: int, k: int, friends: list[int] | None = None) -> RecommendResponse:
        list_id = self.model.list_id
        blocked = self.store.blocked(list_id, user_id)
        mine = self.store.friends(list_id, [user_id]) + [(user_id, f) for f in friends or () if f != user_id]
        known = {f for _, f in mine}
        rows = self.store.recommendations(list_id, user_id)
        if rows:
            keep = [r for r in rows if r[0] not in known and r[0] not in blocked and r[0] != user_id][:k]
            people = [Person(user_id=c, rank=i + 1, score=s, mutual_friends=m) for i, (c, s, m) in enumerate(keep)]
            return RecommendResponse(model_tag=self.tag, source="precomputed", people=people)
        if not mine:
            return RecommendResponse(model_tag=self.tag, source="none", people=[])
        edges = mine + self.store.friends(list_id, sorted(known))
        ranked = friends_of_friends(edges, user_id, blocked, k)
        people = [Person(user_id=c, rank=i + 1, score=s, mutual_friends=m) for i, (c, s, m) in enumerate(ranked)]
        return RecommendResponse(model_tag=self.tag, source="on_demand", people=people)

    def warm_up(self) -> None:
        self.recommend(2**62, 1)  # an unknown user: opens the serving table


@bentoml.service(**service_options(SPEC))
class PeopleYouMayKnow(CaseService):
    handler_type = Recommender
    recommend = handler_api("/recommend", RecommendRequest, RecommendResponse,
                            "People a user may know: precomputed, else friends of friends by Adamic-Adar.")
