"""Refresh tokens already exchanged: each one is good for one exchange.

One document per exchanged token id (``jti``), kept until the token would have expired anyway
(a TTL index on ``expires_at``; the embedded store keeps them, a few bytes each). The unique
``_id`` makes "first exchange" a single atomic insert, so two concurrent exchanges of the same
token cannot both count as the first.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.domain import ensure_utc
from storage.repositories.base import Repository


class RefreshTokenRepository(Repository):
    collection_name = "refresh_tokens_used"
    indexes = (IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),)

    async def mark_used(
        self, jti: str, *, user_id: str, used_at: datetime, expires_at: datetime
    ) -> datetime | None:
        """Record that refresh token ``jti`` is being exchanged now.

        Returns None for its first exchange, else the time of that first exchange.
        """
        try:
            await self.col.insert_one(
                {"_id": jti, "user_id": user_id, "used_at": used_at, "expires_at": expires_at}
            )
        except DuplicateKeyError:
            doc = await self.col.find_one({"_id": jti})
            return ensure_utc(doc["used_at"]) if doc is not None else used_at
        return None
