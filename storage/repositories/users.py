"""``users``: analysts and administrators of the dashboard.

Usernames are unique regardless of case: a normalised ``username_lower`` carries the unique index
while ``username`` keeps the spelling the user chose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.domain import Role, User
from aml.errors import Conflict, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Document, Repository

_MAX_RETRIES = 20


def normalise_username(username: str) -> str:
    """The case-insensitive form usernames are compared by."""
    return username.strip().casefold()


def _doc(user: User, rev: int) -> Document:
    doc = to_doc(user)
    doc["username_lower"] = normalise_username(user.username)
    doc["rev"] = rev
    return doc


def _rev_guard(doc: Document) -> Any:
    """Filter value matching ``doc``'s revision (documents written by other tools may lack it)."""
    return doc["rev"] if "rev" in doc else {"$exists": False}


class UserRepository(Repository):
    collection_name = "users"
    indexes = (
        IndexModel([("username_lower", ASCENDING)], unique=True),
        IndexModel([("role", ASCENDING), ("username_lower", ASCENDING)]),
    )

    async def create(self, user: User) -> User:
        """Store a new user.

        Raises:
            Conflict: the username (ignoring case) or the id is taken.
        """
        doc = _doc(user, 0)
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("username is taken", username=user.username) from exc
        return user

    async def get(self, user_id: str) -> User | None:
        doc = await self.col.find_one({"_id": user_id})
        return from_doc(User, doc) if doc else None

    async def get_or_raise(self, user_id: str) -> User:
        user = await self.get(user_id)
        if user is None:
            raise NotFound("user not found", user_id=user_id)
        return user

    async def get_by_username(self, username: str) -> User | None:
        doc = await self.col.find_one({"username_lower": normalise_username(username)})
        return from_doc(User, doc) if doc else None

    async def list_(
        self,
        *,
        role: Role | None = None,
        active: bool | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[User], int]:
        """Page of users ordered by username, with the total matching count."""
        query: dict[str, Any] = {}
        if role is not None:
            query["role"] = role.value
        if active is not None:
            query["active"] = active
        total = await self.count_matching(query)
        cursor = (
            self.col.find(query)
            .sort([("username_lower", ASCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(User, d) async for d in cursor], int(total)

    async def count(self) -> int:
        return await self.count_matching()

    async def _update(self, user_id: str, change: Callable[[User], User]) -> User:
        """Apply ``change`` as a whole-document replacement guarded by a revision number.

        Update operators would be simpler, but the embedded store turns booleans written by
        ``$set`` into integers; replacements keep every type intact on every server.
        """
        for _ in range(_MAX_RETRIES):
            doc = await self.col.find_one({"_id": user_id})
            if doc is None:
                raise NotFound("user not found", user_id=user_id)
            updated = change(from_doc(User, doc))
            rev = int(doc.get("rev", 0))
            result = await self.col.replace_one(
                {"_id": user_id, "rev": _rev_guard(doc)}, _doc(updated, rev + 1)
            )
            if result.matched_count == 1:
                return updated
        raise Conflict("user is being changed concurrently", user_id=user_id)

    async def update_role(self, user_id: str, *, role: Role) -> User:
        return await self._update(user_id, lambda u: dataclasses.replace(u, role=role))

    async def update_profile(
        self, user_id: str, *, full_name: str | None = None, email: str | None = None
    ) -> User:
        def change(user: User) -> User:
            return dataclasses.replace(
                user,
                full_name=user.full_name if full_name is None else full_name,
                email=user.email if email is None else email,
            )

        return await self._update(user_id, change)

    async def deactivate(self, user_id: str) -> User:
        """Disable the account; bumping ``token_version`` invalidates its issued tokens."""
        return await self._update(
            user_id,
            lambda u: dataclasses.replace(u, active=False, token_version=u.token_version + 1),
        )

    async def revoke_tokens(self, user_id: str) -> User:
        """Bump ``token_version``: every token issued to the user so far stops working."""
        return await self._update(
            user_id, lambda u: dataclasses.replace(u, token_version=u.token_version + 1)
        )

    async def activate(self, user_id: str) -> User:
        return await self._update(user_id, lambda u: dataclasses.replace(u, active=True))

    async def set_password_hash(self, user_id: str, *, password_hash: str) -> User:
        """Replace the password hash; tokens issued before the change stop working."""
        return await self._update(
            user_id,
            lambda u: dataclasses.replace(
                u, password_hash=password_hash, token_version=u.token_version + 1
            ),
        )
