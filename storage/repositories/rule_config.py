"""``rule_config``: versioned rule configuration; exactly one version is active.

Versions are numbered previous + 1 under a unique index, so two editors saving at once get two
consecutive versions, never the same one. The active version holds ``active_key = "active"``
(unique); the others hold their own version number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.domain import RuleConfigVersion
from aml.errors import Conflict, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Document, Repository

ACTIVE = "active"
_MAX_RETRIES = 100


def _from(doc: Document) -> RuleConfigVersion:
    return from_doc(RuleConfigVersion, doc, id_field="version")


class RuleConfigRepository(Repository):
    collection_name = "rule_config"
    indexes = (IndexModel([("active_key", ASCENDING)], unique=True),)

    async def latest(self) -> RuleConfigVersion | None:
        cursor = self.col.find({}).sort("_id", DESCENDING).limit(1)
        async for doc in cursor:
            return _from(doc)
        return None

    async def create_version(
        self,
        *,
        config: Mapping[str, Any],
        created_by: str,
        created_at: datetime,
        comment: str = "",
        activate: bool = False,
    ) -> RuleConfigVersion:
        """Save ``config`` as the next version (inactive unless ``activate``)."""
        for _ in range(_MAX_RETRIES):
            latest = await self.latest()
            record = RuleConfigVersion(
                version=1 if latest is None else latest.version + 1,
                config=dict(config),
                created_by=created_by,
                created_at=created_at,
                active=False,
                comment=comment,
            )
            doc = to_doc(record, id_field="version")
            doc["active_key"] = str(record.version)
            try:
                await self.col.insert_one(doc)
            except DuplicateKeyError:
                continue  # someone saved this version number first: take the next one
            return await self.activate(record.version) if activate else record
        raise Conflict("rule configuration save kept colliding")

    async def get(self, version: int) -> RuleConfigVersion | None:
        doc = await self.col.find_one({"_id": version})
        return _from(doc) if doc else None

    async def get_or_raise(self, version: int) -> RuleConfigVersion:
        record = await self.get(version)
        if record is None:
            raise NotFound("rule configuration version not found", version=version)
        return record

    async def get_active(self) -> RuleConfigVersion | None:
        doc = await self.col.find_one({"active_key": ACTIVE})
        return _from(doc) if doc else None

    async def list_versions(
        self, *, skip: int = 0, limit: int = 50
    ) -> tuple[list[RuleConfigVersion], int]:
        """Page of versions, newest first, with the total count."""
        total = await self.count_matching()
        cursor = self.col.find({}).sort("_id", DESCENDING).skip(skip).limit(limit)
        return [_from(d) async for d in cursor], int(total)

    async def activate(self, version: int) -> RuleConfigVersion:
        """Make ``version`` the active one (the previously active version is deactivated).

        Written as guarded replacements: the embedded store turns booleans written by ``$set``
        into integers, a replacement keeps them booleans.

        Raises:
            NotFound: no such version.
        """
        for _ in range(_MAX_RETRIES):
            current = await self.col.find_one({"active_key": ACTIVE})
            if current is not None and current["_id"] != version:
                demoted = {**current, "active": False, "active_key": str(current["_id"])}
                await self.col.replace_one({"_id": current["_id"], "active_key": ACTIVE}, demoted)
            doc = await self.col.find_one({"_id": version})
            if doc is None:
                raise NotFound("rule configuration version not found", version=version)
            if doc.get("active_key") == ACTIVE:
                return _from(doc)
            promoted = {**doc, "active": True, "active_key": ACTIVE}
            try:
                result = await self.col.replace_one(
                    {"_id": version, "active_key": doc["active_key"]}, promoted
                )
            except DuplicateKeyError:
                continue  # another version was activated in between: deactivate it, retry
            if result.matched_count == 1:
                return _from(promoted)
        raise Conflict("rule configuration activation kept colliding", version=version)
