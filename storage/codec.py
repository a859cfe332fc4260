"""Domain dataclass <-> MongoDB document conversion, driven by the dataclasses' type hints.

One codec serves every repository: enums are stored by value, datetimes as BSON dates (UTC),
tuples as arrays, nested dataclasses as sub-documents. A field named ``id`` becomes ``_id``.

Every event crosses this codec several times (stored, spooled, replayed, scored, decided), so
the per-class work is done once: each dataclass gets a generated encoder that reads its fields
in straight-line code and passes values of exact primitive types through without a call, and a
decoding plan that resolves every field's type hint to a converter ahead of time.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

from aml.domain import fast_init

T = TypeVar("T")


_PRIMITIVE = (str, int, float, bool, type(None))
# Exact classes a generated encoder passes through as they are (subclasses such as str enums
# go through ``_encode``, which gives the same answer, only slower).
_PASS_THROUGH = frozenset(_PRIMITIVE)

Encoder = Callable[[Any], dict[str, Any]]
Decoder = Callable[[Any], Any]


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
        return _encoder(cls)(value)
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_encode(v) for v in value]
    return value


@cache
def _encoder(cls: type) -> Encoder:
    """A function from an instance of the dataclass ``cls`` to its document (generated once).

    Same result as encoding each field with ``_encode``: a value whose class is exactly a
    primitive is kept as it is, anything else goes through ``_encode``.
    """
    lines = ["def encode(o):"]
    for i, name in enumerate(_field_names(cls)):
        lines.append(f"    v{i} = o.{name}")
        lines.append(f"    if v{i}.__class__ not in P: v{i} = E(v{i})")
    items = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(_field_names(cls)))
    lines.append(f"    return {{{items}}}")
    namespace: dict[str, Any] = {"P": _PASS_THROUGH, "E": _encode}
    exec("\n".join(lines), namespace)  # field names come from the class itself
    encode: Encoder = namespace["encode"]
    return encode


def to_doc(obj: Any, *, id_field: str = "id") -> dict[str, Any]:
    """Encode a domain dataclass as a document (``id`` -> ``_id``)."""
    doc: dict[str, Any] = _encode(obj)  # a fresh dict: it may be changed in place
    if id_field in doc:
        doc["_id"] = doc.pop(id_field)
    return doc


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    """``value`` read back as the type ``tp`` (``None`` stays ``None``)."""
    if value is None:
        return None
    convert = _decoder(tp)
    return value if convert is None else convert(value)


def _each(convert: Decoder) -> Decoder:
    """``convert`` applied to one element (``None`` stays ``None``)."""
    return lambda v: None if v is None else convert(v)


def _as_datetime(value: Any) -> Any:
    # Some MongoDB-wire servers return dates written by update operators as ISO text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_bool(value: Any) -> Any:
    return bool(value) if isinstance(value, int) else value


def _as_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) else value


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


@cache
def _decoder(tp: Any) -> Decoder | None:
    """The converter of a non-``None`` stored value to the type ``tp``; ``None`` when the value
    is kept as stored. Resolved once per type hint."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(tp) if a is not type(None)]
        return _decoder(members[0]) if len(members) == 1 else None
    if origin is tuple or origin is list:
        targs = get_args(tp)
        inner = _decoder(targs[0] if targs else Any)
        build = tuple if origin is tuple else list
        if inner is None:
            return build
        one = _each(inner)
        return lambda value: build(one(v) for v in value)
    if origin in (dict, Mapping) or tp is Mapping:
        margs = get_args(tp)
        inner = _decoder(margs[1] if len(margs) == 2 else Any)
        if inner is None:
            return lambda value: {k: v for k, v in value.items()}
        val = _each(inner)
        return lambda value: {k: val(v) for k, v in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp
        if dataclasses.is_dataclass(tp):
            return lambda value: from_doc(tp, value, id_field="")
        if tp is datetime:
            return _as_datetime
        if tp is bool:
            return _as_bool
        if tp is float:
            return _as_float
        if tp is int:
            return _as_int
    return None


FieldPlan = tuple[tuple[str, str, Decoder | None], ...]


@cache
def _plan(cls: type, id_field: str) -> tuple[Callable[..., Any], FieldPlan]:
    """How to rebuild ``cls``: its constructor, and per field its name, its key in a document
    and its converter.

    A slotted dataclass without ``__post_init__`` is built by :func:`aml.domain.fast_init`
    (the same instance as calling the class, without a frozen ``__init__``'s per-field
    ``object.__setattr__``); any other class by calling it.
    """
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    plan = tuple(
        (f.name, "_id" if (id_field and f.name == id_field) else f.name, _decoder(hints[f.name]))
        for f in fields
    )
    direct = (
        "__slots__" in cls.__dict__
        and not hasattr(cls, "__post_init__")
        and all(f.init for f in fields)
    )
    return (fast_init(cls) if direct else cls), plan


def from_doc(cls: type[T], doc: Mapping[str, Any], *, id_field: str = "id") -> T:
    """Decode a document into ``cls``; unknown keys are ignored, missing ones use defaults."""
    build, plan = _plan(cls, id_field)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, key, convert in plan:
        if key in doc:
            value = doc[key]
            kwargs[name] = value if value is None or convert is None else convert(value)
    out: T = build(**kwargs)
    return out
