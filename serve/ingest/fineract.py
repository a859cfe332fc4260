"""Fineract "Web" hook bodies to domain transactions.

Handles every body generation Fineract has sent:

* >= 1.5 wrapper ``{entityName, actionName, request, response, officeId, clientId,
  timestamp, ...}``;
* <= 1.4 bare ``CommandProcessingResult`` (entity and action only in ``X-Fineract-*`` or
  ``X-Mifos-*`` headers);
* failed commands: the 1.5-1.8 error shape (``status: "Exception"``, ``response`` with
  ``httpStatusCode``/``errors``) and the >= 1.9 shape (no ``response`` at all). Both are
  ``REJECTED_COMMAND``: a recorded attempt, never a money movement.

JSON and form (``application/x-www-form-urlencoded``) bodies are accepted. Form bodies carry
nested objects as Java ``Map.toString()`` text, which is read best-effort and refused when it
cannot be read reliably.

Ids are qualified by product (``savings:12``, ``loan:21``) because Fineract savings and loan ids
share no id space. Dedupe keys follow the consumer checklist (tenant-free; storage adds the
tenant): ``SAVINGSACCOUNT|DEPOSIT|<resourceId>``, ``LOAN|REPAYMENT|<resourceId>``,
``LOAN|DISBURSE|<subResourceId>``, ``ACCOUNTTRANSFER|CREATE|<resourceId>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from aml.domain import (
    Direction,
    IngestOutcome,
    Transaction,
    TransactionStatus,
    TransactionType,
    ensure_utc,
    fast_init,
    stable_id,
)
from aml.errors import BadRequest, Unprocessable, UnsupportedMediaType
from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.formats import (
    ValueDate,
    amount_to_minor,
    check_window,
    decode_json_object,
    decode_text,
    describe,
    parse_amount,
    parse_currency,
    parse_hook_timestamp,
    parse_id,
    parse_java_date,
    resolve_occurred_at,
)

__all__ = ["parse_fineract", "parse_java_map"]

SOURCE = "fineract"

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOKEN = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9._-]{1,200}")

# Keys only the >= 1.5 wrapper has at its top level.
_WRAPPER_KEYS = frozenset(
    {
        "entityName",
        "actionName",
        "request",
        "response",
        "createdBy",
        "createdByName",
        "createdByFullName",
        "timestamp",
    }
)
# Keys of Fineract's ErrorInfo / ApiGlobalErrorResponse, found in the 1.5-1.8 failure shape.
_ERROR_KEYS = frozenset(
    {"httpStatusCode", "errors", "developerMessage", "defaultUserMessage", "errorCode"}
)
_PAYMENT_DETAIL_KEYS = (
    "accountNumber",
    "checkNumber",
    "routingCode",
    "receiptNumber",
    "bankNumber",
)
_ACCOUNT_TYPES = {"1": "loan", "2": "savings"}  # Fineract PortfolioAccountType ids
_MAX_TEXT = 500
_MAX_MAP_TEXT = 8192
_MAX_MAP_DEPTH = 8

# Header names as matched (lower-case), in order of preference.
_TENANT_HEADERS = (
    "fineract-platform-tenantid",
    "x-fineract-platform-tenantid",
    "x-mifos-platform-tenantid",
)
_ENTITY_HEADERS = ("x-fineract-entity", "x-mifos-entity")
_ACTION_HEADERS = ("x-fineract-action", "x-mifos-action")
# The only headers the parser reads; the others are skipped.
_READ_HEADERS = frozenset({*_TENANT_HEADERS, *_ENTITY_HEADERS, *_ACTION_HEADERS, "content-type"})

# The frozen dataclasses' own __init__ sets every field through object.__setattr__; these build
# the same instances in about half the time (one Transaction and one event per hook).
_new_transaction = fast_init(Transaction)
_new_event = fast_init(ParsedEvent)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parse_fineract(
    headers: Mapping[str, str],
    body: bytes,
    *,
    content_type: str | None,
    received_at: datetime,
    options: ParseOptions,
) -> ParsedEvent:
    """Parse one Fineract hook delivery.

    Args:
        headers: the request headers; names are matched case-insensitively.
        body: the raw request body.
        content_type: the request's ``Content-Type`` (falls back to the header of that name).
        received_at: when the product received the request (stored as ``received_at``).
        options: limits and defaults.

    Returns:
        The outcome: ``ACCEPTED`` (a money movement), ``CORRECTION`` (reversal/undo/adjust),
        ``REJECTED_COMMAND`` (Fineract reported a failed command), or ``UNSUPPORTED``.

    Raises:
        UnsupportedMediaType: for content types other than JSON and form.
        BadRequest: for bodies that are not UTF-8 JSON/form, or a malformed tenant header.
        Unprocessable: for well-formed bodies with missing or invalid money fields.
    """
    received = ensure_utc(received_at)
    hdrs = _lower_headers(headers)
    tenant = _tenant(hdrs, options.default_tenant)
    header_entity = _header_token(hdrs, _ENTITY_HEADERS, "X-Fineract-Entity")
    header_action = _header_token(hdrs, _ACTION_HEADERS, "X-Fineract-Action")

    media = _media_type(content_type if content_type is not None else hdrs.get("content-type"))
    typeless = media == "form"
    data = _decode_form(body) if typeless else decode_json_object(body)

    notes: list[str] = []
    if _is_wrapper(data):
        body_entity = _body_token(data, "entityName")
        body_action = _body_token(data, "actionName")
        entity = body_entity or header_entity
        action = body_action or header_action
        if (header_entity and body_entity and header_entity != body_entity) or (
            header_action and body_action and header_action != body_action
        ):
            # Hook lookups can be served from a stale cache (Fineract's hook cache key ignores
            # entity and action), so the body, built per command, is what is trusted.
            notes.append(
                f"headers say {header_entity}/{header_action} but body says {entity}/{action};"
                " body used"
            )
        failure = _failure(data)
        if failure is not None:
            return _new_event(
                outcome=IngestOutcome.REJECTED_COMMAND,
                tenant=tenant,
                source=SOURCE,
                entity=entity,
                action=action,
                dedupe_key=None,
                transaction=None,
                note="; ".join([failure, *notes]),
            )
        request = _object(data.get("request"), "request", required=False)
        response = _object(data.get("response"), "response", required=True)
        legacy = False
    elif "resourceId" in data:
        entity, action = header_entity, header_action
        request, response = {}, data
        legacy = True
    else:
        raise Unprocessable(
            "body: expected a Fineract hook wrapper (entityName, request, response) or a "
            "command result (resourceId)"
        )
    if entity is None or action is None:
        where = "X-Fineract-Entity/X-Fineract-Action headers" if legacy else "entityName/actionName"
        raise Unprocessable(f"missing entity or action: expected {where}")

    hook = _Hook(
        tenant=tenant,
        entity=entity,
        action=action,
        top=data,
        request=request,
        response=response,
        typeless=typeless,
        legacy=legacy,
        timestamp=None if legacy else parse_hook_timestamp(data.get("timestamp")),
        received_at=received,
        options=options,
        notes=notes,
    )
    handler = _HANDLERS.get((entity, action))
    if handler is None:
        return _unsupported(hook)
    return handler(hook)


# ---------------------------------------------------------------------------------------------
# Transport: headers, media type, body decoding
# ---------------------------------------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the parser reads, by lower-case name; the first of duplicate names wins."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        # Names already in canonical form (most servers lower-case them) need no normalising.
        key = name if name in _READ_HEADERS else name.strip().lower()
        if key in _READ_HEADERS and key not in result:
            result[key] = value
    return result


def _tenant(hdrs: Mapping[str, str], default: str) -> str:
    value = ""
    for name in _TENANT_HEADERS:
        value = hdrs.get(name, "").strip()
        if value:
            break
    if not value:
        return default
    if not _TENANT.fullmatch(value):
        raise BadRequest(
            "Fineract-Platform-TenantId: expected a tenant identifier (letters, digits, '_', "
            "'.', '-'; at most 64)"
        )
    return value


def _header_token(hdrs: Mapping[str, str], names: tuple[str, ...], label: str) -> str | None:
    """The first non-blank of the ``names`` headers as an upper-case token, or None."""
    for name in names:
        raw = hdrs.get(name, "").strip()
        if raw:
            value = _upper_token(raw)
            if value is None:
                raise BadRequest(f"{label}: expected an upper-case name")
            return value
    return None


@lru_cache(maxsize=256)
def _upper_token(text: str) -> str | None:
    """``text`` upper-cased if it is an entity or action name, else None.

    Cached: every hook names its entity and action twice (headers and body) from a small set.
    """
    value = text.upper()
    return value if _TOKEN.fullmatch(value) else None


_EXPECTED_MEDIA = "expected application/json or application/x-www-form-urlencoded"


def _media_type(content_type: str | None) -> str:
    if content_type is None:
        raise UnsupportedMediaType(f"missing Content-Type: {_EXPECTED_MEDIA}")
    return _media_type_of(content_type)


@lru_cache(maxsize=64)
def _media_type_of(content_type: str) -> str:
    # Cached: a hook configuration sends the same Content-Type on every delivery. Only results
    # are kept; the errors below are raised afresh each time.
    expected = _EXPECTED_MEDIA
    if not content_type.strip():
        raise UnsupportedMediaType(f"missing Content-Type: {expected}")
    mime, *params = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset not in (None, "utf-8", "utf8"):
        raise UnsupportedMediaType("unsupported charset: expected UTF-8")
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        return "json"
    if mime == "application/x-www-form-urlencoded":
        return "form"
    raise UnsupportedMediaType(f"unsupported Content-Type: {expected}")


def _decode_form(body: bytes) -> dict[str, Any]:
    text = decode_text(body)
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=64
        )
    except ValueError:
        raise BadRequest("body is not valid form data") from None
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in ("request", "response"):
            data[key] = parse_java_map(value, key)
        else:
            data[key] = None if value == "null" else value
    return data


# ---------------------------------------------------------------------------------------------
# Java Map.toString() text, as found in form bodies
# ---------------------------------------------------------------------------------------------

_MAP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}=")


def parse_java_map(text: str, field: str) -> dict[str, Any]:
    """Best-effort reader for Java ``Map.toString()`` text such as ``{a=1.0, b={c=x}}``.

    Values are strings (``"null"`` becomes None), maps and lists. The text has no quoting, so a
    value containing ``", "``, ``=`` or brackets cannot be told apart from structure; such text
    is refused rather than guessed.

    Raises:
        Unprocessable: naming ``field`` when the text cannot be read reliably.
    """
    problem = (
        f"{field}: form field holds Java Map text that cannot be read reliably; configure the "
        "hook with Content Type json"
    )
    if not text.startswith("{") or len(text) > _MAX_MAP_TEXT:
        raise Unprocessable(problem)
    reader = _MapReader(text)
    try:
        value = reader.value(0)
    except ValueError:
        raise Unprocessable(problem) from None
    if reader.pos != len(text) or not isinstance(value, dict):
        raise Unprocessable(problem)
    return value


class _MapReader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def value(self, depth: int) -> Any:
        if depth > _MAX_MAP_DEPTH:
            raise ValueError("too deep")
        ch = self.text[self.pos : self.pos + 1]
        if ch == "{":
            return self._map(depth)
        if ch == "[":
            return self._list(depth)
        return self._scalar()

    def _map(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return result
        while True:
            key = _MAP_KEY.match(self.text, self.pos)
            if key is None:
                raise ValueError("key expected")
            self.pos = key.end()
            result[key.group()[:-1]] = self.value(depth + 1)
            if self.text.startswith(", ", self.pos):
                self.pos += 2
            elif self.text.startswith("}", self.pos):
                self.pos += 1
                return result
            else:
                raise ValueError("separator expected")

    def _list(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth + 1))
            if self.text.startswith(", ", self.pos):
                self.pos += 2
            elif self.text.startswith("]", self.pos):
                self.pos += 1
                return result
            else:
                raise ValueError("separator expected")

    def _scalar(self) -> str | None:
        end = len(self.text)
        for stop in (", ", "}", "]"):
            found = self.text.find(stop, self.pos)
            if found != -1:
                end = min(end, found)
        raw = self.text[self.pos : end]
        if any(ch in raw for ch in "{[="):
            raise ValueError("structure inside a value")
        self.pos = end
        return None if raw == "null" else raw


# ---------------------------------------------------------------------------------------------
# Body shape
# ---------------------------------------------------------------------------------------------


def _is_wrapper(data: Mapping[str, Any]) -> bool:
    return not _WRAPPER_KEYS.isdisjoint(data) or data.get("status") == "Exception"


def _body_token(data: Mapping[str, Any], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise Unprocessable(f"{key}: expected a string, got {describe(raw)}")
    value = _upper_token(raw.strip())
    if value is None:
        raise Unprocessable(f"{key}: expected an upper-case name such as SAVINGSACCOUNT")
    return value


def _failure(data: Mapping[str, Any]) -> str | None:
    """Why the wrapper reports a failed command, or None when the command was applied."""
    response = data.get("response")
    if data.get("status") == "Exception" or (
        isinstance(response, dict) and not _ERROR_KEYS.isdisjoint(response)
    ):
        details = []
        if isinstance(response, dict):
            status = response.get("httpStatusCode")
            if isinstance(status, (int, str)) and str(status).isdigit() and len(str(status)) <= 3:
                details.append(f"HTTP {status}")
            code = response.get("userMessageGlobalisationCode")
            if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
                details.append(code)
        return "command failed" + (f" ({', '.join(details)})" if details else "")
    if not isinstance(response, dict):
        # Since 1.9 a failed command (or one waiting for maker-checker approval) is sent
        # without a response object.
        return "command failed or awaiting approval (no response)"
    return None


def _object(value: Any, field: str, *, required: bool) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Unprocessable(f"{field}: expected an object, got {describe(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# One hook, with helpers to read its fields
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Hook:
    tenant: str
    entity: str
    action: str
    top: Mapping[str, Any]
    request: Mapping[str, Any]
    response: Mapping[str, Any]
    typeless: bool
    legacy: bool
    timestamp: datetime | None
    received_at: datetime
    options: ParseOptions
    notes: list[str] = field(default_factory=list)
    # ``response.changes`` (or an empty map), read by most field helpers: looked up once.
    changes: Mapping[str, Any] = field(init=False)
    # The currency once read successfully (it is needed for the amount and the transaction).
    _currency: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        changes = self.response.get("changes")
        self.changes = changes if isinstance(changes, dict) else {}

    def required_id(self, source: str, key: str) -> str:
        value = self._container(source).get(key)
        if value is None:
            raise Unprocessable(f"{source}.{key}: required for {self.entity}/{self.action}")
        return parse_id(value, f"{source}.{key}")

    def optional_id(self, source: str, key: str) -> str | None:
        value = self._container(source).get(key)
        return None if value is None else parse_id(value, f"{source}.{key}")

    def _container(self, source: str) -> Mapping[str, Any]:
        if source == "response":
            return self.response
        if source == "request":
            return self.request
        if source == "body":
            return self.top
        raise KeyError(source)

    @property
    def client_id(self) -> str | None:
        return self.optional_id("response", "clientId") or self.optional_id("body", "clientId")

    @property
    def office_id(self) -> str | None:
        return self.optional_id("body", "officeId")

    @property
    def anchor_text(self) -> str:
        """The delivery's own time, used where the event carries no id of its own."""
        moment = self.timestamp if self.timestamp is not None else self.received_at
        return moment.astimezone(UTC).isoformat(timespec="microseconds")

    def currency(self) -> str:
        if self._currency is None:
            self._currency = self._read_currency()
        return self._currency

    def _read_currency(self) -> str:
        for source, container in (("request", self.request), ("response.changes", self.changes)):
            for key in ("currencyCode", "currency"):
                value = container.get(key)
                if value is not None:
                    return parse_currency(value, f"{source}.{key}")
        return self.options.default_currency

    def amount(
        self, *sources: tuple[str, str], allow_zero: bool = False
    ) -> tuple[int, Decimal | None]:
        """Minor units from the first present source, and the decimal read (None if absent)."""
        currency = self.currency()
        for source, key in sources:
            container = self.request if source == "request" else self.changes
            value = container.get(key)
            if value is None:
                continue
            name = f"{source}.{key}"
            decimal = parse_amount(
                value,
                locale=container.get("locale", self.request.get("locale")),
                field=name,
                # changes.* holds the literal text the client sent, whatever its type was.
                typeless=self.typeless or source != "request",
            )
            minor = amount_to_minor(
                decimal,
                currency=currency,
                field=name,
                max_major=self.options.max_amount_major,
                allow_zero=allow_zero,
            )
            return minor, decimal
        return 0, None

    def value_date(self, *sources: tuple[str, str]) -> tuple[ValueDate | None, str]:
        for source, key in sources:
            container = self.request if source == "request" else self.changes
            value = container.get(key)
            if value is None:
                continue
            name = f"{source}.{key}"
            parsed = parse_java_date(
                value,
                pattern=container.get("dateFormat", self.request.get("dateFormat")),
                locale=container.get("locale", self.request.get("locale")),
                field=name,
            )
            return parsed, name
        return None, "timestamp"

    def occurred_at(self, value: ValueDate | None, field_name: str) -> tuple[datetime, bool]:
        occurred, estimated = resolve_occurred_at(
            value, anchor=self.timestamp, received_at=self.received_at, tz=self.options.timezone
        )
        check_window(
            occurred,
            received_at=self.received_at,
            max_future=self.options.max_future,
            max_age=self.options.max_age,
            field=field_name,
        )
        return occurred, estimated

    def base_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        created_by = self.optional_id("body", "createdBy")
        if created_by is not None:
            attributes["createdBy"] = created_by
        if self.legacy:
            attributes["legacy_body"] = True
        return attributes

    def payment_details(self) -> dict[str, Any]:
        """Payment-detail fields (``accountNumber`` is the payer's external account as typed by
        the teller, not the Fineract ``accountNo``)."""
        details: dict[str, Any] = {}
        changes, request = self.changes, self.request
        type_id = changes.get("paymentTypeId", request.get("paymentTypeId"))
        if type_id is not None:
            details["paymentTypeId"] = parse_id(type_id, "request.paymentTypeId")
        for key in _PAYMENT_DETAIL_KEYS:
            value = changes.get(key, request.get(key))
            if value is not None:  # _text(None) is None: skip the call for the usual absence
                text = _text(value)
                if text is not None:
                    details[key] = text
        return details

    def description(self, key: str = "note") -> str | None:
        return _text(self.request.get(key)) or _text(self.changes.get(key))

    def event(
        self, outcome: IngestOutcome, dedupe_key: str | None, tx: Transaction | None
    ) -> ParsedEvent:
        return _new_event(
            outcome=outcome,
            tenant=self.tenant,
            source=SOURCE,
            entity=self.entity,
            action=self.action,
            dedupe_key=dedupe_key,
            transaction=tx,
            note="; ".join(self.notes) or None,
        )

    def transaction(self, dedupe_key: str, **fields: Any) -> Transaction:
        office_id = fields.pop("office_id", self.office_id)
        return _new_transaction(
            id=stable_id(self.tenant, dedupe_key),
            tenant=self.tenant,
            dedupe_key=dedupe_key,
            source=SOURCE,
            received_at=self.received_at,
            office_id=office_id,
            # Fineract's office is the branch the rules know from other sources.
            branch_id=office_id,
            **fields,
        )


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        value = int(value)
    if isinstance(value, (str, int, float)):
        text = str(value).strip()
        return text[:_MAX_TEXT] or None
    return None


# ---------------------------------------------------------------------------------------------
# Handlers, one per (entity, action)
# ---------------------------------------------------------------------------------------------

_SAVINGS_TYPES = {
    ("SAVINGSACCOUNT", "DEPOSIT"): TransactionType.DEPOSIT,
    ("FIXEDDEPOSITACCOUNT", "DEPOSIT"): TransactionType.FIXED_DEPOSIT,
    ("RECURRINGDEPOSITACCOUNT", "DEPOSIT"): TransactionType.RECURRING_DEPOSIT,
    ("SAVINGSACCOUNT", "WITHDRAWAL"): TransactionType.WITHDRAWAL,
    ("FIXEDDEPOSITACCOUNT", "WITHDRAWAL"): TransactionType.WITHDRAWAL,
    ("RECURRINGDEPOSITACCOUNT", "WITHDRAWAL"): TransactionType.WITHDRAWAL,
}


def _money_attributes(hook: _Hook, decimal: Decimal | None, estimated: bool) -> dict[str, Any]:
    attributes = hook.base_attributes()
    if decimal is None:
        # Enrichment re-reads the transaction from Fineract and fills the amount in.
        attributes["amount_unknown"] = True
    if estimated:
        attributes["time_estimated"] = True
    return attributes


def _savings_money(hook: _Hook) -> ParsedEvent:
    tx_id = hook.required_id("response", "resourceId")
    account = hook.required_id("response", "savingsId")
    minor, decimal = hook.amount(("request", "transactionAmount"))
    value, date_field = hook.value_date(("request", "transactionDate"))
    occurred, estimated = hook.occurred_at(value, date_field)
    attributes = _money_attributes(hook, decimal, estimated) | hook.payment_details()
    if hook.entity != "SAVINGSACCOUNT":
        attributes["product"] = hook.entity.lower()
    dedupe_key = f"{hook.entity}|{hook.action}|{tx_id}"
    tx = hook.transaction(
        dedupe_key,
        type=_SAVINGS_TYPES[(hook.entity, hook.action)],
        direction=Direction.IN if hook.action == "DEPOSIT" else Direction.OUT,
        amount_minor=minor,
        currency=hook.currency(),
        occurred_at=occurred,
        account_id=f"savings:{account}",
        external_id=tx_id,
        client_id=hook.client_id,
        group_id=hook.optional_id("response", "groupId"),
        description=hook.description(),
        attributes=attributes,
    )
    return hook.event(IngestOutcome.ACCEPTED, dedupe_key, tx)


def _transfer_side(hook: _Hook, side: str) -> str | None:
    """``loan:<id>`` / ``savings:<id>`` for the ``from`` or ``to`` side of a transfer request."""
    account = hook.optional_id("request", f"{side}AccountId")
    kind_raw = hook.request.get(f"{side}AccountType")
    if account is None:
        return None
    if kind_raw is None:
        raise Unprocessable(f"request.{side}AccountType: required with request.{side}AccountId")
    kind = _ACCOUNT_TYPES.get(parse_id(kind_raw, f"request.{side}AccountType"))
    if kind is None:
        raise Unprocessable(f"request.{side}AccountType: expected 1 (loan) or 2 (savings)")
    return f"{kind}:{account}"


def _account_transfer(hook: _Hook) -> ParsedEvent:
    tx_id = hook.required_id("response", "resourceId")
    source = _transfer_side(hook, "from")
    if source is None:
        # Without the request (<= 1.4 bodies) only the response names the source account.
        savings = hook.optional_id("response", "savingsId")
        loan = hook.optional_id("response", "loanId")
        if savings is not None:
            source = f"savings:{savings}"
        elif loan is not None:
            source = f"loan:{loan}"
        else:
            raise Unprocessable("request.fromAccountId: required for ACCOUNTTRANSFER/CREATE")
    target = _transfer_side(hook, "to")
    minor, decimal = hook.amount(("request", "transferAmount"))
    value, date_field = hook.value_date(("request", "transferDate"))
    occurred, estimated = hook.occurred_at(value, date_field)
    attributes = _money_attributes(hook, decimal, estimated)
    to_office = hook.optional_id("request", "toOfficeId")
    if to_office is not None:
        attributes["toOfficeId"] = to_office
    loans = [
        side.split(":", 1)[1] for side in (source, target) if side and side.startswith("loan:")
    ]
    dedupe_key = f"ACCOUNTTRANSFER|CREATE|{tx_id}"
    tx = hook.transaction(
        dedupe_key,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        amount_minor=minor,
        currency=hook.currency(),
        occurred_at=occurred,
        account_id=source,
        external_id=tx_id,
        client_id=hook.optional_id("request", "fromClientId") or hook.client_id,
        office_id=hook.optional_id("request", "fromOfficeId") or hook.office_id,
        loan_id=loans[0] if loans else None,
        counterparty_account_id=target,
        counterparty_client_id=hook.optional_id("request", "toClientId"),
        description=hook.description("transferDescription"),
        attributes=attributes,
    )
    return hook.event(IngestOutcome.ACCEPTED, dedupe_key, tx)


def _loan_id(hook: _Hook) -> str:
    loan = hook.optional_id("response", "loanId")
    return loan if loan is not None else hook.required_id("response", "resourceId")


def _loan_event(
    hook: _Hook,
    dedupe_key: str,
    *,
    type: TransactionType,
    direction: Direction,
    amount_minor: int,
    occurred_at: datetime,
    loan: str,
    external_id: str | None,
    attributes: dict[str, Any],
) -> ParsedEvent:
    """An accepted movement on loan account ``loan``, with the hook's client, group and text."""
    tx = hook.transaction(
        dedupe_key,
        type=type,
        direction=direction,
        amount_minor=amount_minor,
        currency=hook.currency(),
        occurred_at=occurred_at,
        account_id=f"loan:{loan}",
        external_id=external_id,
        client_id=hook.client_id,
        group_id=hook.optional_id("response", "groupId"),
        loan_id=loan,
        description=hook.description(),
        attributes=attributes,
    )
    return hook.event(IngestOutcome.ACCEPTED, dedupe_key, tx)


def _loan_disburse(hook: _Hook) -> ParsedEvent:
    loan = _loan_id(hook)
    sub = hook.optional_id("response", "subResourceId")
    minor, decimal = hook.amount(("request", "transactionAmount"))
    value, date_field = hook.value_date(
        ("request", "actualDisbursementDate"), ("changes", "actualDisbursementDate")
    )
    occurred, estimated = hook.occurred_at(value, date_field)
    if sub is not None and hook.action == "DISBURSE":
        # Multi-tranche loans send one DISBURSE per tranche with the same loan id.
        dedupe_key = f"LOAN|DISBURSE|{sub}"
    else:
        # DISBURSETOSAVINGS (and old DISBURSE bodies) name no transaction: loan + value date.
        if value is None:
            raise Unprocessable(
                f"request.actualDisbursementDate: required to identify {hook.entity}/{hook.action}"
            )
        dedupe_key = f"LOAN|{hook.action}|{loan}|{value.day.isoformat()}"
    attributes = _money_attributes(hook, decimal, estimated) | hook.payment_details()
    for key in ("resourceExternalId", "subResourceExternalId"):
        text = _text(hook.response.get(key))
        if text is not None:
            attributes[key] = text
    if hook.action == "DISBURSETOSAVINGS":
        attributes["to_savings"] = True
    return _loan_event(
        hook,
        dedupe_key,
        type=TransactionType.LOAN_DISBURSEMENT,
        # Relative to the loan account: the principal leaves it towards the client.
        direction=Direction.OUT,
        amount_minor=minor,
        occurred_at=occurred,
        loan=loan,
        external_id=sub,
        attributes=attributes,
    )


def _loan_repayment(hook: _Hook) -> ParsedEvent:
    tx_id = hook.required_id("response", "resourceId")
    loan = hook.required_id("response", "loanId")
    # request keeps the JSON type (number vs locale string); changes only has the literal text,
    # which is ambiguous for numbers sent with a comma-decimal locale. So request is read first.
    minor, decimal = hook.amount(("request", "transactionAmount"), ("changes", "transactionAmount"))
    value, date_field = hook.value_date(
        ("request", "transactionDate"), ("changes", "transactionDate")
    )
    occurred, estimated = hook.occurred_at(value, date_field)
    attributes = _money_attributes(hook, decimal, estimated) | hook.payment_details()
    external = _text(hook.response.get("resourceExternalId")) or _text(
        hook.request.get("externalId")
    )
    if external is not None:
        attributes["externalId"] = external
    dedupe_key = f"LOAN|REPAYMENT|{tx_id}"
    return _loan_event(
        hook,
        dedupe_key,
        type=TransactionType.LOAN_REPAYMENT,
        direction=Direction.IN,
        amount_minor=minor,
        occurred_at=occurred,
        loan=loan,
        external_id=tx_id,
        attributes=attributes,
    )


def _correction(
    hook: _Hook,
    *,
    dedupe_key: str,
    account_id: str,
    external_id: str | None,
    reverses: str | None,
    loan_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ParsedEvent:
    minor, decimal = hook.amount(
        ("request", "transactionAmount"), ("changes", "transactionAmount"), allow_zero=True
    )
    value, date_field = hook.value_date(
        ("request", "transactionDate"), ("changes", "transactionDate")
    )
    occurred, estimated = hook.occurred_at(value, date_field)
    attributes = _money_attributes(hook, decimal, estimated) | dict(extra or {})
    tx = hook.transaction(
        dedupe_key,
        type=TransactionType.REVERSAL,
        direction=Direction.NONE,
        amount_minor=minor,
        currency=hook.currency(),
        occurred_at=occurred,
        account_id=account_id,
        status=TransactionStatus.CORRECTION,
        external_id=external_id,
        client_id=hook.client_id,
        group_id=hook.optional_id("response", "groupId"),
        loan_id=loan_id,
        description=hook.description(),
        reverses_external_id=reverses,
        attributes=attributes,
    )
    return hook.event(IngestOutcome.CORRECTION, dedupe_key, tx)


def _savings_undo(hook: _Hook) -> ParsedEvent:
    # resourceId is the savings ACCOUNT id; the undone transaction is only in the request URL,
    # so nothing here identifies it. The delivery's own time tells undos of one account apart.
    account = hook.optional_id("response", "savingsId") or hook.required_id(
        "response", "resourceId"
    )
    return _correction(
        hook,
        dedupe_key=f"SAVINGSACCOUNT|UNDOTRANSACTION|{account}|{hook.anchor_text}",
        account_id=f"savings:{account}",
        external_id=None,
        reverses=None,
    )


def _savings_reverse_or_adjust(hook: _Hook) -> ParsedEvent:
    resource = hook.required_id("response", "resourceId")
    account = hook.optional_id("response", "savingsId") or resource
    return _correction(
        hook,
        dedupe_key=f"SAVINGSACCOUNT|{hook.action}|{resource}",
        account_id=f"savings:{account}",
        external_id=resource,
        # Fineract does not say which transaction the resourceId stands for here.
        reverses=None,
    )


def _loan_adjust(hook: _Hook) -> ParsedEvent:
    resource = hook.required_id("response", "resourceId")
    loan = hook.required_id("response", "loanId")
    _, decimal = hook.amount(
        ("request", "transactionAmount"), ("changes", "transactionAmount"), allow_zero=True
    )
    undo = decimal is not None and decimal == 0
    extra: dict[str, Any] = {}
    if decimal is not None:
        extra["undo"] = undo
    return _correction(
        hook,
        dedupe_key=f"LOAN|ADJUST|{resource}",
        account_id=f"loan:{loan}",
        external_id=resource,
        # An undo (amount 0) reports the adjusted transaction itself; a modification reports
        # the replacement, so the original is unknown.
        reverses=resource if undo else None,
        loan_id=loan,
        extra=extra,
    )


def _unsupported(hook: _Hook) -> ParsedEvent:
    try:
        resource = hook.optional_id("response", "resourceId") or "-"
    except Unprocessable:
        resource = "-"
    hook.notes.insert(0, f"unsupported {hook.entity}/{hook.action}")
    return hook.event(
        IngestOutcome.UNSUPPORTED,
        f"{hook.entity}|{hook.action}|{resource}|{hook.anchor_text}",
        None,
    )


_HANDLERS: dict[tuple[str, str], Callable[[_Hook], ParsedEvent]] = {
    **{key: _savings_money for key in _SAVINGS_TYPES},
    ("ACCOUNTTRANSFER", "CREATE"): _account_transfer,
    ("LOAN", "DISBURSE"): _loan_disburse,
    ("LOAN", "DISBURSETOSAVINGS"): _loan_disburse,
    ("LOAN", "REPAYMENT"): _loan_repayment,
    ("SAVINGSACCOUNT", "UNDOTRANSACTION"): _savings_undo,
    ("SAVINGSACCOUNT", "REVERSETRANSACTION"): _savings_reverse_or_adjust,
    ("SAVINGSACCOUNT", "ADJUSTTRANSACTION"): _savings_reverse_or_adjust,
    ("LOAN", "ADJUST"): _loan_adjust,
}
