"""``credit_profiles``: the latest credit profile of each client, one per (tenant, client_id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne

from aml.domain import CreditProfile, CreditTier
from aml.errors import NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Document, Repository


def profile_id(tenant: str, client_id: str) -> str:
    return f"{tenant}|{client_id}"


def _doc(profile: CreditProfile) -> Document:
    doc = to_doc(profile)
    # The id travels in the replacement: an upsert must not invent one.
    doc["_id"] = profile_id(profile.tenant, profile.client_id)
    return doc


class CreditProfileRepository(Repository):
    collection_name = "credit_profiles"
    indexes = (
        IndexModel([("tenant", ASCENDING), ("client_id", ASCENDING)], unique=True),
        IndexModel([("tier", ASCENDING), ("score", DESCENDING)]),
        IndexModel([("needs_review", ASCENDING)]),
    )

    async def upsert(self, profile: CreditProfile) -> CreditProfile:
        """Store ``profile`` as the client's current one (replacing any previous)."""
        doc = _doc(profile)
        await self.col.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return profile

    async def upsert_many(self, profiles: Sequence[CreditProfile]) -> int:
        """Nightly batch: replace or insert every profile in one unordered bulk write.

        Returns the number of profiles written (inserted plus replaced).
        """
        if not profiles:
            return 0
        ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in map(_doc, profiles)]
        result = await self.col.bulk_write(ops, ordered=False)
        return int(result.upserted_count) + int(result.matched_count)

    async def get(self, *, tenant: str, client_id: str) -> CreditProfile | None:
        doc = await self.col.find_one({"_id": profile_id(tenant, client_id)})
        return from_doc(CreditProfile, doc) if doc else None

    async def get_or_raise(self, *, tenant: str, client_id: str) -> CreditProfile:
        profile = await self.get(tenant=tenant, client_id=client_id)
        if profile is None:
            raise NotFound("credit profile not found", tenant=tenant, client_id=client_id)
        return profile

    async def list_(
        self,
        *,
        tenant: str | None = None,
        tiers: Sequence[CreditTier] | None = None,
        needs_review: bool | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[CreditProfile], int]:
        """Page of profiles, best score first, with the total matching count."""
        query: dict[str, Any] = {}
        if tenant is not None:
            query["tenant"] = tenant
        if tiers:
            query["tier"] = {"$in": [t.value for t in tiers]}
        if needs_review is not None:
            query["needs_review"] = needs_review
        total = await self.count_matching(query, scalar=("tier",))
        cursor = (
            self.col.find(query)
            .sort([("score", DESCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(CreditProfile, d) async for d in cursor], int(total)

    async def tier_distribution(self, *, tenant: str | None = None) -> dict[CreditTier, int]:
        """Number of clients per tier (every tier present, zero when none)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"tenant": tenant} if tenant else {}},
            {"$group": {"_id": "$tier", "n": {"$sum": 1}}},
        ]
        cursor = await self.col.aggregate(pipeline)
        counts = {str(d["_id"]): int(d["n"]) async for d in cursor}
        return {t: counts.get(t.value, 0) for t in CreditTier}

    async def count(self) -> int:
        return await self.count_matching()
