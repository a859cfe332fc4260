"""Domain types shared by every part of the product.

Framework-free: no Ray, Sanic, NiceGUI or pymongo here. Money is integer minor units plus an ISO
currency code; every datetime is timezone-aware UTC; statuses are ``StrEnum``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from aml.money import exponent

_T = TypeVar("_T")


def utcnow() -> datetime:
    """Wall-clock now in UTC. Only entry points and services call this; features never do."""
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class TransactionType(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    LOAN_DISBURSEMENT = "loan_disbursement"
    LOAN_REPAYMENT = "loan_repayment"
    PAYMENT = "payment"
    CHARGE = "charge"
    FEE = "fee"
    SHARE_PURCHASE = "share_purchase"
    SHARE_REDEMPTION = "share_redemption"
    FIXED_DEPOSIT = "fixed_deposit"
    RECURRING_DEPOSIT = "recurring_deposit"
    REVERSAL = "reversal"
    OTHER = "other"


class Direction(StrEnum):
    """Money flow relative to ``Transaction.account_id``."""

    IN = "in"
    OUT = "out"
    NONE = "none"


class TransactionStatus(StrEnum):
    PENDING = "pending"  # stored, waiting for a decision
    SCORED = "scored"  # decision stored
    REJECTED = "rejected"  # Fineract command failed: an attempt, never a money movement
    CORRECTION = "correction"  # reversal / undo / adjust: recorded, not scored as new money


class ActorType(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    MERCHANT = "merchant"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    OPEN = "open"
    UNDER_REVIEW = "under_review"
    ESCALATED = "escalated"
    CLOSED_LEGITIMATE = "closed_legitimate"
    CLOSED_SUSPICIOUS = "closed_suspicious"
    CLOSED_FRAUD = "closed_fraud"

    @property
    def is_open(self) -> bool:
        return self in (AlertStatus.OPEN, AlertStatus.UNDER_REVIEW, AlertStatus.ESCALATED)


class AnalystDecision(StrEnum):
    """An analyst's verdict on an alert; stored as a training label."""

    LEGITIMATE = "legitimate"
    SUSPICIOUS = "suspicious"
    CONFIRMED_FRAUD = "confirmed_fraud"


class CaseStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    ESCALATED = "escalated"
    CLOSED_NO_ACTION = "closed_no_action"
    CLOSED_SAR_FILED = "closed_sar_filed"


class Role(StrEnum):
    ANALYST = "analyst"
    SENIOR_ANALYST = "senior_analyst"
    ML_ENGINEER = "ml_engineer"
    ADMIN = "admin"


class CreditTier(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


class CreditRecommendation(StrEnum):
    APPROVE = "approve"
    REVIEW_CAREFULLY = "review_carefully"
    REJECT = "reject"


class CreditRequestStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class IngestOutcome(StrEnum):
    ACCEPTED = "accepted"  # became a transaction
    DUPLICATE = "duplicate"  # same dedupe key seen before
    REJECTED_COMMAND = "rejected_command"  # Fineract reported the command failed
    CORRECTION = "correction"  # reversal / adjust recorded
    UNSUPPORTED = "unsupported"  # unknown entity/action: stored raw and counted
    INVALID = "invalid"  # bad input, answered with 4xx


def _slot_writer(cls: type) -> tuple[dict[str, Any], Callable[[str, str], str], str]:
    """How generated constructors of the slotted dataclass ``cls`` set its fields.

    A frozen dataclass refuses attribute assignment, and going around it through each slot's
    descriptor (``__set__``) is a generic call per field: most of the cost of building a
    transaction. Where CPython allows it, the object is instead built as an instance of a
    plain twin class with the same slots (ordinary, fast attribute stores) and then given its
    real class, which ``__class__`` assignment permits between classes of identical layout.
    Otherwise the descriptors are used.

    Returns the names the generated code needs, a function writing one statement that sets a
    field (``(field, value expression) -> line``) and the line that finishes the object.
    """
    slots = cls.__dict__["__slots__"]
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if any(name.startswith("_") for name in names):
        raise TypeError(f"{cls.__name__}: field names starting with '_' are not supported")
    twin = None
    if cls.__bases__ == (object,) and "__dict__" not in cls.__dict__:
        twin = type(f"_{cls.__name__}Twin", (), {"__slots__": slots})
        try:
            probe: Any = object.__new__(twin)
            probe.__class__ = cls
        except TypeError:  # pragma: no cover - layouts differ on this interpreter
            twin = None
    if twin is not None:
        namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
        return (
            namespace,
            lambda name, value: f"    _o.{name} = {value}\n",
            "    _o.__class__ = _cls\n",
        )
    namespace = {"_new": object.__new__, "_twin": cls}
    setters = {name: f"_set_{name}" for name in names}
    for name, alias in setters.items():
        owner = next(k for k in cls.__mro__ if name in k.__dict__)
        namespace[alias] = owner.__dict__[name].__set__
    return namespace, lambda name, value: f"    {setters[name]}(_o, {value})\n", ""


def fast_pickle(cls: type[_T]) -> type[_T]:
    """Pickle instances of a slotted dataclass as one tuple of field values.

    The hot types cross Ray process boundaries several times per batch. The default for a
    slotted dataclass walks ``dataclasses.fields`` on both sides and sets fields one generic
    call at a time; this stores the values with one ``attrgetter`` call and rebuilds with
    straight-line field stores (see :func:`_slot_writer`), several times faster, with every
    field kept. The rebuild function is registered under a module-level name so pickle finds
    it by reference. Apply it after the ``@dataclass`` decorator (``slots=True`` replaces the
    class).
    """
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    getter = operator.attrgetter(*names)
    namespace, write, finish = _slot_writer(cls)
    body = "".join(write(name, f"v[{i}]") for i, name in enumerate(names))
    fn_name = f"_rebuild_{cls.__name__}"
    exec(f"def {fn_name}(v):\n    _o = _new(_twin)\n{body}{finish}    return _o\n", namespace)
    rebuild: Callable[[tuple[Any, ...]], _T] = namespace[fn_name]
    rebuild.__module__ = cls.__module__
    rebuild.__qualname__ = fn_name
    setattr(sys.modules[cls.__module__], fn_name, rebuild)
    if len(names) == 1:

        def reduce(self: _T, protocol: int = 0) -> tuple[Any, ...]:
            return rebuild, ((getter(self),),)
    else:

        def reduce(self: _T, protocol: int = 0) -> tuple[Any, ...]:
            return rebuild, (getter(self),)

    # ``__reduce_ex__`` too: pickle calls it first, and the inherited one only forwards.
    setattr(cls, "__reduce__", reduce)  # noqa: B010
    setattr(cls, "__reduce_ex__", reduce)  # noqa: B010
    return cls


def fast_init(cls: type[_T]) -> Callable[..., _T]:
    """A keyword-only constructor of a frozen, slotted dataclass that builds the same instance
    as calling the class, several times faster.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``; on the
    scoring hot path (a decision, its rule hits, contexts for every transaction) that was a
    noticeable part of the CPU per transaction. The returned function takes the same keyword
    arguments with the same defaults (factories are called per instance) and sets the fields
    with straight-line stores (see :func:`_slot_writer`). Only for classes without
    ``__post_init__`` (nothing to skip).
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__: use the class itself")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    namespace, write, finish = _slot_writer(cls)
    namespace["_MISSING"] = _MISSING
    params, body = [], []
    for i, f in enumerate(fields):
        if f.default is not dataclasses.MISSING:
            namespace[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            body.append(f"    if {f.name} is _MISSING:\n        {f.name} = _f{i}()\n")
        else:
            params.append(f.name)
        body.append(write(f.name, f.name))
    fn_name = f"_init_{cls.__name__}"
    source = f"def {fn_name}(*, {', '.join(params)}):\n    _o = _new(_twin)\n"
    exec(source + "".join(body) + finish + "    return _o\n", namespace)
    init: Callable[..., _T] = namespace[fn_name]
    init.__qualname__ = fn_name
    return init


_MISSING: Any = object()


def _unpack_list(data: bytes) -> list[Any]:
    value: list[Any] = pickle.loads(data)
    return value


class PackedList(list[_T]):
    """A list that crosses a process boundary as one pickled blob (a plain list comes out).

    Ray pickles arguments and results with cloudpickle, whose pure-Python dispatch-table lookup
    runs for every non-builtin object: for a batch of transactions, contexts or decisions that
    cost more than scoring them. Pickling the whole list first with the standard pickler and
    handing Ray the bytes keeps every object and shared reference while skipping that lookup.
    In-process it is an ordinary list.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpack_list, (pickle.dumps(list(self), protocol=pickle.HIGHEST_PROTOCOL),)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()


def _unseal(data: bytes) -> SealedBatch[Any]:
    batch: SealedBatch[Any] = SealedBatch(pickle.loads(data))
    batch._blob = data
    return batch


class SealedBatch(tuple[_T, ...]):
    """An immutable batch that crosses process boundaries as one pickled blob, pickled once.

    Like :class:`PackedList`, but a received batch keeps the bytes it came in, so passing it on
    (the scoring pipeline to the rule replica, the rule replica to every state shard it
    touches) sends those bytes again instead of pickling every transaction anew. A tuple, so
    the kept bytes always match what it holds.
    """

    _blob: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        blob = self._blob
        if blob is None:
            blob = self._blob = pickle.dumps(tuple(self), protocol=pickle.HIGHEST_PROTOCOL)
        return _unseal, (blob,)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()


def sealed(items: Iterable[_T]) -> SealedBatch[_T]:
    """``items`` as a :class:`SealedBatch` (itself when it already is one)."""
    return items if isinstance(items, SealedBatch) else SealedBatch(items)


_UNIT: dict[str, float] = {}


def _unit(currency: str) -> float:
    """``10 ** exponent`` of a currency as a float (cached: ``amount`` is read constantly)."""
    unit = _UNIT.get(currency)
    if unit is None:
        unit = _UNIT[currency] = float(10 ** exponent(currency))
    return unit


def stable_id(*parts: object) -> str:
    """Deterministic 24-hex id from the given parts (used for ids derived from dedupe keys)."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """A money movement (or a recorded attempt/correction) as the product sees it.

    ``account_id`` and ``counterparty_account_id`` are qualified by product kind
    (``"savings:12"``, ``"loan:21"``) because Fineract savings and loan ids share no id space.
    All ids are only unique within ``tenant``.
    """

    id: str
    tenant: str
    dedupe_key: str
    source: str  # "fineract", "generic", "sweep", "import"
    type: TransactionType
    direction: Direction
    amount_minor: int
    currency: str
    occurred_at: datetime  # value date/time of the movement (transaction's own time)
    received_at: datetime  # when this product first stored it
    account_id: str
    status: TransactionStatus = TransactionStatus.PENDING
    risk_level: RiskLevel | None = None  # set with the decision (search filter)
    external_id: str | None = None  # Fineract transaction id (resourceId / subResourceId)
    client_id: str | None = None
    office_id: str | None = None
    group_id: str | None = None
    loan_id: str | None = None
    counterparty_account_id: str | None = None
    counterparty_client_id: str | None = None
    counterparty_name: str | None = None
    actor_type: ActorType = ActorType.CUSTOMER
    agent_id: str | None = None
    branch_id: str | None = None
    merchant_id: str | None = None
    device_id: str | None = None
    ip_address: str | None = None
    country_code: str | None = None
    kyc_level: int | None = None
    description: str | None = None
    reverses_external_id: str | None = None  # for corrections: what was undone, when known
    reversed: bool = False
    enriched: bool = False
    running_balance_minor: int | None = None
    account_no: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def amount(self) -> float:
        """Amount in major units (for features and display only; never for bookkeeping)."""
        # Same value as ``aml.money.to_major`` (int / float divides as float / float).
        unit = _UNIT.get(self.currency)
        return self.amount_minor / (unit if unit is not None else _unit(self.currency))

    @property
    def customer_key(self) -> str:
        """Key of the per-customer state: tenant plus the account."""
        return f"{self.tenant}|{self.account_id}"

    def replace(self, **changes: Any) -> Transaction:
        return dataclasses.replace(self, **changes)


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHit:
    """One rule that fired, with the values that made it fire."""

    rule_id: str
    category: str
    severity: float  # in [0, 1]
    values: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureContribution:
    feature: str
    value: float
    contribution: float  # signed; for anomaly: standardised distance from the customer's baseline


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class ScorerResult:
    """What one scorer said about one transaction.

    ``available`` is False when the scorer is missing, down or has no model; its score is then
    ``None`` and the decision records it as absent (never as 0).
    """

    scorer: str  # "rules", "anomaly", "xgboost"
    available: bool
    score: float | None = None
    model_version: str | None = None
    reason: str | None = None  # why unavailable, e.g. "no model"
    contributions: tuple[FeatureContribution, ...] = ()


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    transaction_id: str
    tenant: str
    score: float
    risk_level: RiskLevel
    alert: bool
    decided_at: datetime
    scorers: tuple[ScorerResult, ...]
    rule_hits: tuple[RuleHit, ...] = ()
    feature_set_version: str = ""
    rule_config_version: int = 0
    shadow_scores: Mapping[str, float] = field(default_factory=dict)
    explanation: str = ""


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An alert on a customer; repeated risky transactions of the same customer while the alert
    is open are grouped onto it."""

    id: str
    tenant: str
    customer_key: str
    account_id: str
    client_id: str | None
    status: AlertStatus
    risk_level: RiskLevel
    score: float
    transaction_ids: tuple[str, ...]
    rule_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    sla_due_at: datetime
    title: str = ""
    assignee: str | None = None
    decision: AnalystDecision | None = None
    decision_note: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    case_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseNote:
    author: str
    at: datetime
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    id: str
    number: str  # human reference, e.g. CASE-2026-000123
    tenant: str
    title: str
    status: CaseStatus
    created_by: str
    created_at: datetime
    updated_at: datetime
    sla_due_at: datetime
    alert_ids: tuple[str, ...] = ()
    transaction_ids: tuple[str, ...] = ()
    notes: tuple[CaseNote, ...] = ()
    assignee: str | None = None
    client_id: str | None = None
    approved_by: str | None = None  # four-eyes approver of escalation / SAR closure
    pending_status: CaseStatus | None = None  # requested transition awaiting a second user


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    username: str
    role: Role
    password_hash: str
    active: bool
    created_at: datetime
    full_name: str = ""
    email: str | None = None
    token_version: int = 0  # bumped on deactivation / password change: old tokens stop working


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """Append-only, hash-chained record of an action."""

    seq: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    details: Mapping[str, Any]
    ip: str | None
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditProfile:
    tenant: str
    client_id: str
    score: float
    tier: CreditTier
    limit_minor: int
    currency: str
    components: Mapping[str, float]
    features: Mapping[str, float | None]
    computed_at: datetime
    window_days: int = 180
    reasons: tuple[str, ...] = ()
    cluster_id: int | None = None
    cluster_tier: CreditTier | None = None
    needs_review: bool = False  # cluster tier and rule tier disagree by more than one tier


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditRequest:
    id: str
    tenant: str
    client_id: str
    amount_minor: int
    currency: str
    status: CreditRequestStatus
    recommendation: CreditRecommendation
    reasons: tuple[str, ...]
    score_at_request: float
    tier_at_request: CreditTier
    limit_at_request_minor: int
    inflation_flag: bool
    submitted_by: str
    submitted_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    id: str
    kind: str  # "xgboost", "anomaly", "credit_kmeans"
    version: str
    feature_set_version: str
    features: tuple[str, ...]
    metrics: Mapping[str, float]
    artifact_uri: str
    stage: str  # "candidate", "champion", "shadow", "archived"
    created_at: datetime
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleConfigVersion:
    version: int
    config: Mapping[str, Any]
    created_by: str
    created_at: datetime
    active: bool
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestRecord:
    """One received event as it arrived (raw body kept for inspection and replay)."""

    id: str
    tenant: str
    source: str
    received_at: datetime
    outcome: IngestOutcome
    entity: str | None = None
    action: str | None = None
    dedupe_key: str | None = None
    transaction_id: str | None = None
    error: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
