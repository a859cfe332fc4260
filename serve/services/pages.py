"""Server-side pagination result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aml.errors import BadRequest

T = TypeVar("T")
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    skip: int
    limit: int


def check_window(skip: int, limit: int) -> None:
    """Reject negative offsets and oversized pages.

    Raises:
        BadRequest: naming the bad parameter.
    """
    if skip < 0:
        raise BadRequest("skip must be >= 0", field="skip")
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
