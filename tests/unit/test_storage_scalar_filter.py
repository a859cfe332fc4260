"""How counts send equalities on fields that never hold arrays (``storage.repositories.base``)."""

from __future__ import annotations

from storage.repositories.base import scalar_filter


def test_equalities_and_in_on_scalar_fields_become_eq_everywhere_in_the_filter() -> None:
    query = {
        "status": "open",
        "risk_level": {"$in": ["high", "critical"]},
        "rule_ids": "R1",
        "$and": [{"tenant": "t1"}, {"created_ms": {"$gte": 5}}, {"flag": True}],
    }
    assert scalar_filter(query, ("status", "risk_level", "tenant", "flag")) == {
        "$and": [
            {
                "status": {"$eq": "open"},
                "rule_ids": "R1",  # may hold an array: MongoDB's containment meaning stays
                "$and": [{"tenant": {"$eq": "t1"}}, {"created_ms": {"$gte": 5}}, {"flag": True}],
            },
            {"$or": [{"risk_level": {"$eq": "high"}}, {"risk_level": {"$eq": "critical"}}]},
        ]
    }


def test_other_operators_and_fields_are_left_as_they_are() -> None:
    query = {"status": {"$ne": "closed"}, "n": 3, "$or": [{"a": 1}]}
    assert scalar_filter(query, ("status",)) == query
    assert scalar_filter({}, ("status",)) == {}
