"""``models``: registry of trained models and their stage (candidate, champion, shadow, archived).

At most one champion and one shadow per kind: while a model holds one of those stages its
``stage_key`` is ``<kind>|<stage>``, otherwise its own id, and ``stage_key`` is unique. Promoting
a model demotes the previous holder to archived first; the unique index guarantees that two
concurrent promotions can never leave two champions.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.domain import ModelRecord
from aml.errors import Conflict, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Repository

STAGES = ("candidate", "champion", "shadow", "archived")
EXCLUSIVE_STAGES = ("champion", "shadow")
_MAX_RETRIES = 20


def stage_key(kind: str, stage: str, model_id: str) -> str:
    return f"{kind}|{stage}" if stage in EXCLUSIVE_STAGES else model_id


class ModelRepository(Repository):
    collection_name = "models"
    indexes = (
        IndexModel([("stage_key", ASCENDING)], unique=True),
        IndexModel([("kind", ASCENDING), ("version", ASCENDING)], unique=True),
        IndexModel([("kind", ASCENDING), ("created_at", DESCENDING)]),
    )

    async def register(self, record: ModelRecord) -> ModelRecord:
        """Store a trained model.

        Raises:
            Conflict: the id or (kind, version) exists, or its stage is taken for the kind.
        """
        if record.stage not in STAGES:
            raise Conflict("unknown model stage", stage=record.stage)
        doc = to_doc(record)
        doc["stage_key"] = stage_key(record.kind, record.stage, record.id)
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("model exists", model_id=record.id, version=record.version) from exc
        return record

    async def get(self, model_id: str) -> ModelRecord | None:
        doc = await self.col.find_one({"_id": model_id})
        return from_doc(ModelRecord, doc) if doc else None

    async def get_or_raise(self, model_id: str) -> ModelRecord:
        record = await self.get(model_id)
        if record is None:
            raise NotFound("model not found", model_id=model_id)
        return record

    async def list_(
        self, *, kind: str | None = None, stage: str | None = None, skip: int = 0, limit: int = 50
    ) -> tuple[list[ModelRecord], int]:
        """Page of models, newest first, with the total matching count."""
        query: dict[str, Any] = {}
        if kind is not None:
            query["kind"] = kind
        if stage is not None:
            query["stage"] = stage
        total = await self.count_matching(query)
        cursor = (
            self.col.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(ModelRecord, d) async for d in cursor], int(total)

    async def _holder(self, kind: str, stage: str) -> ModelRecord | None:
        doc = await self.col.find_one({"stage_key": stage_key(kind, stage, "")})
        return from_doc(ModelRecord, doc) if doc else None

    async def get_champion(self, kind: str) -> ModelRecord | None:
        return await self._holder(kind, "champion")

    async def get_shadow(self, kind: str) -> ModelRecord | None:
        return await self._holder(kind, "shadow")

    async def set_stage(self, model_id: str, *, stage: str) -> ModelRecord:
        """Move a model to ``stage``; a new champion or shadow archives the previous one.

        Raises:
            NotFound: no such model.
            Conflict: unknown stage, or concurrent promotions kept colliding.
        """
        if stage not in STAGES:
            raise Conflict("unknown model stage", stage=stage)
        record = await self.get_or_raise(model_id)
        key = stage_key(record.kind, stage, model_id)
        for _ in range(_MAX_RETRIES):
            if stage in EXCLUSIVE_STAGES:
                previous = await self._holder(record.kind, stage)
                if previous is not None and previous.id != model_id:
                    await self.col.update_one(
                        {"_id": previous.id, "stage_key": key},
                        {"$set": {"stage": "archived", "stage_key": previous.id}},
                    )
            # ``update_one`` rather than ``find_one_and_update``: the embedded store reports a
            # unique-index violation only for the former.
            try:
                result = await self.col.update_one(
                    {"_id": model_id}, {"$set": {"stage": stage, "stage_key": key}}
                )
            except DuplicateKeyError:
                continue  # someone promoted another model in between: archive it and retry
            if result.matched_count == 0:
                raise NotFound("model not found", model_id=model_id)
            return await self.get_or_raise(model_id)
        raise Conflict("model promotion kept colliding", model_id=model_id, stage=stage)
