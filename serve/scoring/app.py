"""Typed Serve application builder: the ``import_path`` of ``deploy/serve_config.yaml``.

``serve.scoring.app:build_app`` receives the YAML's ``args`` validated as
:class:`ScoringAppArgs`; replicas, autoscaling and each deployment's ``user_config`` come from the
YAML's ``deployments`` section.
"""

# No ``from __future__ import annotations``: Serve reads ``build_app``'s annotation as a class
# to validate the YAML args into ``ScoringAppArgs``.
import os

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from actors.customer_state import DEFAULT_GRAPH_HOPS
from actors.view_link import DEFAULT_LINK_CAPACITY
from serve.scoring.deployments import AnomalyScorer, RuleScorer, ScoringPipeline, XGBoostScorer


class ScoringAppArgs(BaseModel):
    """Construction-time arguments of the scoring application.

    Attributes:
        mongodb_uri: store the state actors rebuild windows from. Left out of the YAML (it may
            carry a password): the deploy command injects it, else ``AML_MONGODB_URI`` is read
            where the application is built; ``None`` keeps state in memory only.
        mongodb_db: database name.
        state_shards: number of per-customer state actors (customers are hashed onto them).
        state_group: name of the set of state actors (one set per deployment environment).
        state_max_keys: most windows (accounts and agents) one shard keeps in memory; the least
            recently used are dropped and rebuilt from the store when next needed.
        state_link_capacity: transactions a shard sends one rule replica once and then names by
            slot (``actors.view_link``); the replica holds that many per shard as objects
            (about 1 KB each), and up to as many records in the windows' last views it
            continues, so memory per rule replica grows with it times the shard count.
        graph_hops: longest path the transfer graph's cycle and chain searches walk back from a
            transfer, in earlier transfers (a cycle or chain of n transfers needs n - 1); the
            rules' own bounds apply within it.
        detached_state: state actors outlive pipeline replicas (keep True in production).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mongodb_uri: str | None = None
    mongodb_db: str = "fineract_aml"
    state_shards: int = Field(default=1, ge=1, le=1024)
    state_group: str = Field(default="default", min_length=1)
    state_max_keys: int = Field(default=200_000, ge=100)
    state_link_capacity: int = Field(default=DEFAULT_LINK_CAPACITY, ge=0)
    graph_hops: int = Field(default=DEFAULT_GRAPH_HOPS, ge=1, le=8)
    detached_state: bool = True


def build_app(args: ScoringAppArgs) -> Application:
    """Compose the scorers into the ``ScoringPipeline`` ingress."""
    state = {
        "mongodb_uri": args.mongodb_uri or os.environ.get("AML_MONGODB_URI"),
        "mongodb_db": args.mongodb_db,
        "shards": args.state_shards,
        "group": args.state_group,
        "max_keys": args.state_max_keys,
        "link_capacity": args.state_link_capacity,
        "graph_hops": args.graph_hops,
        "detached": args.detached_state,
    }
    return ScoringPipeline.bind(  # type: ignore[attr-defined,no-any-return]
        RuleScorer.bind(state),  # type: ignore[attr-defined]
        AnomalyScorer.bind(),  # type: ignore[attr-defined]
        XGBoostScorer.bind(),  # type: ignore[attr-defined]
        state,
    )
