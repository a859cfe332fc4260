"""Domain dataclass <-> MongoDB document conversion, driven by the dataclasses' type hints.

One codec serves every repository: enums are stored by value, datetimes as BSON dates (UTC),
tuples as arrays, nested dataclasses as sub-documents. A field named ``id`` becomes ``_id``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


_PRIMITIVE = (str, int, float, bool, type(None))


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _encode(value: Any) -> Any:
    # Primitives first: they are most of every document (hot path of every write).
    if isinstance(value, _PRIMITIVE):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    cls = type(value)
    if dataclasses.is_dataclass(cls):
        return {name: _encode(getattr(value, name)) for name in _field_names(cls)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_encode(v) for v in value]
    return value


def to_doc(obj: Any, *, id_field: str = "id") -> dict[str, Any]:
    """Encode a domain dataclass as a document (``id`` -> ``_id``)."""
    doc = _encode(obj)
    if id_field in doc:
        doc["_id"] = doc.pop(id_field)
    return dict(doc)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _decode(members[0], value)
        return value
    if origin in (tuple,):
        targs = get_args(tp)
        inner = targs[0] if targs else Any
        return tuple(_decode(inner, v) for v in value)
    if origin in (list,):
        (inner,) = get_args(tp) or (Any,)
        return [_decode(inner, v) for v in value]
    if origin in (dict, Mapping) or tp is Mapping:
        margs = get_args(tp)
        inner = margs[1] if len(margs) == 2 else Any
        return {k: _decode(inner, v) for k, v in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp(value)
        if dataclasses.is_dataclass(tp):
            return from_doc(tp, value, id_field="")
        if tp is datetime:
            # Some MongoDB-wire servers return dates written by update operators as ISO text.
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if tp is bool and isinstance(value, int):
            return bool(value)
        if tp is float and isinstance(value, int):
            return float(value)
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
    return value


def from_doc(cls: type[T], doc: Mapping[str, Any], *, id_field: str = "id") -> T:
    """Decode a document into ``cls``; unknown keys are ignored, missing ones use defaults."""
    hints = _hints(cls)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = "_id" if (id_field and f.name == id_field) else f.name
        if key in doc:
            kwargs[f.name] = _decode(hints[f.name], doc[key])
    return cls(**kwargs)
