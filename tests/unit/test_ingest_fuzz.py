"""Whatever arrives, the parsers answer with an event or an ``AmlError`` (a 4xx), nothing else.

Three kinds of input: arbitrary bytes, arbitrary JSON values, and the documented Fineract bodies
with fields deleted or replaced by hostile values. Successful results must also be sane: money
events carry a UTC value date inside the accepted window and a non-negative amount.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml.domain import IngestOutcome, TransactionStatus, stable_id
from aml.errors import AmlError
from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.fineract import parse_fineract
from serve.ingest.formats import parse_amount, parse_id, parse_java_date
from serve.ingest.generic import parse_generic, verify_signature
from tests.unit.test_ingest_fineract import form_body

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fineract"
HEADERS: dict[str, dict[str, str]] = json.loads((FIXTURES / "headers.json").read_text())
BODIES = {name: json.loads((FIXTURES / f"{name}.json").read_bytes()) for name in HEADERS}
RECEIVED = datetime(2024, 2, 1, 9, 0, tzinfo=UTC)
OPTIONS = ParseOptions(default_currency="USD")
JSON = "application/json; charset=UTF-8"
FORM = "application/x-www-form-urlencoded"

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

hostile_text = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1e400",
        "NaN",
        "Infinity",
        "1,000.00",
        "1.000,50",
        "1\u202f000,50",
        "1.0E7",
        "9" * 40,
        "15 January 2024",
        "31 February 2024",
        "2024-01-15",
        "15 janvier 2024 25:61:61",
        "dd MMMM yyyy",
        "yyyy-MM-dd",
        "dd MM yyyy [",
        "'",
        "QQQ",
        "dddddddddd",
        "fr",
        "de_CH",
        "xx_YY",
        "en-US-x-test",
        "{a=1, b={c=2}}",
        "SAVINGSACCOUNT",
        "Exception",
    ]
) | st.text(max_size=30)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | hostile_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

header_names = st.sampled_from(
    [
        "X-Fineract-Entity",
        "x-fineract-action",
        "FINERACT-PLATFORM-TENANTID",
        "X-Mifos-Entity",
        "X-Mifos-Action",
        "X-Mifos-Platform-TenantId",
        "Content-Type",
    ]
)
header_maps = st.dictionaries(
    header_names,
    st.sampled_from(["SAVINGSACCOUNT", "DEPOSIT", "LOAN", "REPAYMENT", "default", ""])
    | st.text(max_size=20),
    max_size=5,
)
content_types = st.sampled_from([JSON, FORM, "application/json", "text/plain", "", None]) | st.text(
    max_size=40
)


def check(event: ParsedEvent, options: ParseOptions = OPTIONS) -> None:
    """Invariants every successfully parsed event keeps."""
    assert event.tenant
    tx = event.transaction
    if event.outcome in (IngestOutcome.REJECTED_COMMAND, IngestOutcome.UNSUPPORTED):
        assert tx is None
        return
    assert event.outcome in (IngestOutcome.ACCEPTED, IngestOutcome.CORRECTION)
    assert tx is not None and event.dedupe_key is not None
    assert tx.id == stable_id(event.tenant, event.dedupe_key)
    assert tx.tenant == event.tenant and tx.dedupe_key == event.dedupe_key
    assert tx.amount_minor >= 0
    assert tx.occurred_at.tzinfo is not None and tx.occurred_at.utcoffset() is not None
    assert tx.occurred_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert tx.occurred_at <= RECEIVED + options.max_future
    assert tx.occurred_at >= RECEIVED - options.max_age
    if event.outcome == IngestOutcome.ACCEPTED:
        assert tx.status == TransactionStatus.PENDING
        assert tx.amount_minor > 0 or tx.attributes.get("amount_unknown") is True
    else:
        assert tx.status == TransactionStatus.CORRECTION


def run_fineract(headers: dict[str, str], body: bytes, content_type: str | None) -> None:
    try:
        event = parse_fineract(
            headers, body, content_type=content_type, received_at=RECEIVED, options=OPTIONS
        )
    except AmlError as exc:
        assert 400 <= exc.status_code < 500
        return
    check(event)


@FUZZ
@given(headers=header_maps, body=st.binary(max_size=300), content_type=content_types)
def test_fineract_arbitrary_bytes(headers: dict[str, str], body: bytes, content_type: str) -> None:
    run_fineract(headers, body, content_type)


@FUZZ
@given(headers=header_maps, value=json_values, form=st.booleans())
def test_fineract_arbitrary_json(headers: dict[str, str], value: Any, form: bool) -> None:
    if form and isinstance(value, dict):
        run_fineract(headers, form_body(value), FORM)
    else:
        run_fineract(headers, json.dumps(value).encode(), JSON)


def _key_paths(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths.append((*prefix, key))
            paths.extend(_key_paths(value, (*prefix, key)))
    return paths


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(BODIES)))
    data = copy.deepcopy(BODIES[name])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _key_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["delete", "replace", "hostile"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        else:
            parent[path[-1]] = draw(hostile_text)
    return name, data


@FUZZ
@given(case=mutated_bodies(), form=st.booleans(), keep_headers=st.booleans())
def test_fineract_mutated_real_bodies(
    case: tuple[str, dict[str, Any]], form: bool, keep_headers: bool
) -> None:
    name, data = case
    headers = HEADERS[name] if keep_headers else {}
    if form:
        run_fineract(headers, form_body(data), FORM)
    else:
        run_fineract(headers, json.dumps(data).encode(), JSON)


VALID_GENERIC = {
    "transaction_id": "T-1",
    "account_id": "savings:12",
    "client_id": "7",
    "transaction_type": "deposit",
    "amount": 10.5,
    "transaction_date": "2024-02-01T08:00:00Z",
}


def run_generic(body: bytes) -> None:
    try:
        event = parse_generic(body, received_at=RECEIVED, options=OPTIONS, tenant="default")
    except AmlError as exc:
        assert 400 <= exc.status_code < 500
        return
    assert event.outcome == IngestOutcome.ACCEPTED
    check(event)


@FUZZ
@given(
    body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_generic_arbitrary_input(body: bytes) -> None:
    run_generic(body)


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from([*sorted(VALID_GENERIC), "kyc_level", "ip_address"]),
        json_values,
        max_size=3,
    ),
    dropped=st.sets(st.sampled_from(sorted(VALID_GENERIC)), max_size=2),
)
def test_generic_mutated_valid_body(changes: dict[str, Any], dropped: set[str]) -> None:
    data = {k: v for k, v in VALID_GENERIC.items() if k not in dropped} | changes
    run_generic(json.dumps(data).encode())


@FUZZ
@given(body=st.binary(max_size=100), signature=st.none() | st.text(max_size=80))
def test_signature_check_only_ever_says_no_with_401(body: bytes, signature: str | None) -> None:
    try:
        verify_signature(body, signature, "s" * 40)
    except AmlError as exc:
        assert exc.status_code == 401


@FUZZ
@given(value=json_values, locale=st.none() | hostile_text, typeless=st.booleans())
def test_amount_reader_total(value: Any, locale: Any, typeless: bool) -> None:
    try:
        result = parse_amount(value, locale=locale, field="f", typeless=typeless)
    except AmlError as exc:
        assert exc.status_code == 422
        return
    assert result.is_finite()


@FUZZ
@given(
    text=hostile_text,
    pattern=hostile_text | st.text(alphabet="dMLyuEHms '[]-/.,", max_size=20),
    locale=json_values,
)
def test_date_reader_total(text: Any, pattern: Any, locale: Any) -> None:
    try:
        parse_java_date(text, pattern=pattern, locale=locale, field="f")
    except AmlError as exc:
        assert exc.status_code == 422


@FUZZ
@given(value=json_values)
def test_id_reader_total(value: Any) -> None:
    try:
        result = parse_id(value, "f")
    except AmlError as exc:
        assert exc.status_code == 422
        return
    assert result.isdigit()
