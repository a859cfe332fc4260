"""Golden outputs of the in-process scoring core: any change in what it decides fails here.

A fixed, seeded stream of a few thousand transactions (several currencies, agents, merchants,
loans spent from the client's other accounts, cycles and layering chains, bursts, late events,
attempts and corrections) goes through the same stages as the scoring pipeline: in-memory shard
windows and the transfer graph (contexts), features, rules and the policy, with deterministic
stand-ins for the model scorers so that every explanation path (rule hits, model contributions,
absent and invalid scorers, customer-baseline rewrites) is taken. A digest of every context,
feature vector, rule hit and decision per batch is compared with ``tests/fixtures/
scoring_golden.json``.

The digest file records what the current code computes; regenerate it only for a deliberate
change of behaviour (and say so in the commit)::

    .venv/bin/python -m tests.unit.test_scoring_golden
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.domain import (
    ActorType,
    Decision,
    Direction,
    FeatureContribution,
    RuleHit,
    ScorerResult,
    Transaction,
    TransactionStatus,
    TransactionType,
    stable_id,
)
from aml.features import FEATURE_NAMES, FeatureParams, compute_features, feature_vector
from aml.history import HistoryContext
from aml.policy import PolicyConfig, decide, with_anomaly_explanation
from aml.rules.config import RuleSettings, default_rule_config
from aml.rules.engine import RuleEngine, RuleEvaluation
from aml.summaries import SummaryCache

GOLDEN = Path(__file__).parents[1] / "fixtures" / "scoring_golden.json"
N_TRANSACTIONS = 4_000
BATCH = 256
SEED = 20261128
START = datetime(2026, 3, 2, 19, 0, tzinfo=UTC)  # evening: the stream crosses local night
SPAN = timedelta(hours=20)
DECIDED_AT = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)

_CURRENCIES = (
    ["XAF"] * 85 + ["EUR"] * 7 + ["USD"] * 5 + ["KES"] * 3  # KES: no thresholds configured
)
_SCALE = {"XAF": 1.0, "EUR": 1 / 655.957, "USD": 1 / 600.0, "KES": 0.2}


def _amount_minor(rng: random.Random, currency: str) -> int:
    """Ordinary amounts, the structuring band, large ones and round ones (XAF-scaled)."""
    pick = rng.random()
    if pick < 0.65:
        major = rng.lognormvariate(10, 1.3)
    elif pick < 0.78:
        major = rng.uniform(450_000, 499_999)
    elif pick < 0.88:
        major = rng.uniform(500_000, 3_000_000)
    else:
        major = 1_000.0 * rng.randint(1, 900)
    major *= _SCALE[currency]
    unit = 1 if currency == "XAF" else 100
    return max(1, round(major * unit))


def golden_stream(n: int = N_TRANSACTIONS, seed: int = SEED) -> list[Transaction]:
    """The fixed stream, in arrival order (a few events arrive late)."""
    rng = random.Random(seed)
    out: list[Transaction] = []
    ips = [f"10.0.{i // 8}.{i % 8}" for i in range(40)]
    step = SPAN / n
    i = 0

    def emit(**fields: Any) -> None:
        nonlocal i
        i += 1
        key = f"GOLDEN|{i}"
        at = fields.pop("occurred_at")
        currency = fields.pop("currency", "XAF")
        defaults: dict[str, Any] = {
            "id": stable_id("golden", key),
            "tenant": "bank" if rng.random() < 0.95 else "other-bank",
            "dedupe_key": key,
            "source": "fineract",
            "currency": currency,
            "amount_minor": _amount_minor(rng, currency),
            "occurred_at": at,
            "received_at": at + timedelta(seconds=rng.choice([1, 5, 3600])),
            "ip_address": rng.choice([None, *ips[:12]]),
            "device_id": rng.choice([None, "dev-a", "dev-b", f"dev-{rng.randrange(60)}"]),
            "country_code": rng.choice([None, "CM", "CM", "CM", "GA", "NG"]),
            "kyc_level": rng.choice([None, 0, 1, 1, 2, 3]),
        }
        defaults.update(fields)
        out.append(Transaction(**defaults))

    while len(out) < n:
        at = START + step * len(out)
        if rng.random() < 0.03:
            at -= timedelta(minutes=rng.choice([5, 45, 180]))  # late arrival
        c = rng.randrange(120)
        # A few busy accounts and one busy agent, so that velocity rules have something to see.
        if rng.random() < 0.12:
            c = rng.choice([1, 2, 3])
        acct = f"savings:{c}"
        client = str(c)
        agent = None
        if rng.random() < 0.3:
            agent = "agent:hot" if rng.random() < 0.6 else f"agent:{rng.randrange(12)}"
        currency = rng.choice(_CURRENCIES)
        actor = ActorType.AGENT if agent else ActorType.CUSTOMER
        kind = rng.random()
        common: dict[str, Any] = {
            "occurred_at": at,
            "currency": currency,
            "account_id": acct,
            "client_id": client,
            "agent_id": agent,
            "actor_type": actor,
        }
        if kind < 0.22:
            emit(type=TransactionType.DEPOSIT, direction=Direction.IN, **common)
        elif kind < 0.40:
            emit(type=TransactionType.WITHDRAWAL, direction=Direction.OUT, **common)
        elif kind < 0.62:
            other = f"savings:{rng.randrange(120)}"
            emit(
                type=TransactionType.TRANSFER,
                direction=rng.choice([Direction.OUT, Direction.OUT, Direction.IN]),
                counterparty_account_id=other,
                counterparty_client_id=other.split(":")[1],
                **common,
            )
        elif kind < 0.67:
            merchant = rng.random() < 0.5
            common["actor_type"] = ActorType.MERCHANT if merchant and not agent else actor
            emit(
                type=TransactionType.PAYMENT,
                direction=Direction.OUT,
                merchant_id=f"m-{rng.randrange(5)}" if merchant else None,
                counterparty_name=None if rng.random() < 0.6 else "Shop",
                **common,
            )
        elif kind < 0.71:
            # A loan disbursed on the loan account, then spent from the client's savings.
            loan = f"loan:{c}"
            common["account_id"] = loan
            emit(
                type=TransactionType.LOAN_DISBURSEMENT,
                direction=Direction.OUT,
                counterparty_account_id=acct,
                loan_id=str(c),
                **common,
            )
            for k in range(rng.randint(1, 5)):
                emit(
                    type=rng.choice([TransactionType.TRANSFER, TransactionType.WITHDRAWAL]),
                    direction=Direction.OUT,
                    occurred_at=at + timedelta(minutes=3 + 4 * k),
                    currency=currency,
                    account_id=rng.choice([acct, f"current:{c}"]),
                    client_id=client,
                    counterparty_account_id=f"savings:{rng.randrange(200, 260)}",
                    tenant="bank",
                )
        elif kind < 0.74:
            emit(
                type=rng.choice([TransactionType.LOAN_REPAYMENT, TransactionType.FEE]),
                direction=Direction.OUT,
                **common,
            )
        elif kind < 0.77:
            # A layering chain (sometimes closing a cycle) of similar amounts within minutes.
            nodes = [f"savings:{rng.randrange(300, 330)}" for _ in range(rng.randint(3, 5))]
            if rng.random() < 0.5:
                nodes.append(nodes[0])
            base = rng.randint(200_000, 2_000_000)
            for k, (src, dst) in enumerate(itertools.pairwise(nodes)):
                emit(
                    type=TransactionType.TRANSFER,
                    direction=Direction.OUT,
                    occurred_at=at + timedelta(minutes=2 * k),
                    account_id=src,
                    client_id=src.split(":")[1],
                    counterparty_account_id=dst,
                    amount_minor=int(base * rng.uniform(0.93, 1.0) ** k),
                    tenant="bank",
                )
        elif kind < 0.80:
            # Fan-in / scatter-gather: many payers into one collector, then money leaves.
            collector = f"savings:{rng.randrange(400, 404)}"
            for k in range(rng.randint(4, 9)):
                emit(
                    type=TransactionType.TRANSFER,
                    direction=Direction.OUT,
                    occurred_at=at + timedelta(minutes=k),
                    account_id=f"savings:{rng.randrange(120)}",
                    counterparty_account_id=collector,
                    amount_minor=rng.randint(300_000, 490_000),
                    tenant="bank",
                )
            emit(
                type=TransactionType.TRANSFER,
                direction=Direction.OUT,
                occurred_at=at + timedelta(minutes=12),
                account_id=collector,
                counterparty_account_id=f"savings:{rng.randrange(120)}",
                amount_minor=rng.randint(1_000_000, 4_000_000),
                tenant="bank",
            )
        elif kind < 0.82:
            # The same movement recorded on both sides (mirror legs count once).
            other = f"savings:{rng.randrange(120)}"
            amount = _amount_minor(rng, "XAF")
            emit(
                type=TransactionType.TRANSFER,
                direction=Direction.OUT,
                counterparty_account_id=other,
                amount_minor=amount,
                tenant="bank",
                **{**common, "currency": "XAF"},
            )
            emit(
                type=TransactionType.TRANSFER,
                direction=Direction.IN,
                occurred_at=at + timedelta(minutes=1),
                account_id=other,
                counterparty_account_id=acct,
                amount_minor=amount,
                tenant="bank",
            )
        elif kind < 0.85:
            status = rng.choice(
                [TransactionStatus.REJECTED, TransactionStatus.CORRECTION, TransactionStatus.SCORED]
            )
            emit(
                type=rng.choice([TransactionType.REVERSAL, TransactionType.DEPOSIT]),
                direction=Direction.IN,
                status=status,
                reversed=rng.random() < 0.5,
                **common,
            )
        else:
            emit(
                type=rng.choice(list(TransactionType)),
                direction=rng.choice(list(Direction)),
                counterparty_account_id=rng.choice([None, acct, f"savings:{rng.randrange(120)}"]),
                **common,
            )
    return out[:n]


def _unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stand-in model outputs)."""
    raw = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big") / 2.0**64


def _model_results(tx: Transaction, features: dict[str, float]) -> list[ScorerResult]:
    """Anomaly and XGBoost stand-ins: available, absent, unavailable or invalid by turns."""
    u = _unit_hash("model", tx.id)
    ranked = sorted(features.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:4]
    contributions = tuple(
        FeatureContribution(feature=name, value=value, contribution=(value % 7.0) - 3.0)
        for name, value in ranked
    )
    out: list[ScorerResult] = []
    if u < 0.85:
        out.append(
            ScorerResult(
                scorer="anomaly",
                available=True,
                score=_unit_hash("anomaly", tx.id) ** 3,
                model_version="golden-if",
                contributions=contributions,
            )
        )
    elif u < 0.92:
        out.append(ScorerResult(scorer="anomaly", available=False, reason="no model"))
    if 0.3 < u < 0.7:
        out.append(
            ScorerResult(
                scorer="xgboost",
                available=True,
                score=_unit_hash("xgb", tx.id) ** 2,
                model_version="golden-xgb",
                contributions=contributions[1:],
            )
        )
    elif u >= 0.97:
        out.append(ScorerResult(scorer="xgboost", available=True, score=float("nan")))
    return out


def score_stream(txs: Sequence[Transaction]) -> Iterator[dict[str, list[str]]]:
    """Per batch, one canonical line per transaction for each stage (and ``fired``: the ids of
    the rules that fired)."""
    config = default_rule_config().model_copy(
        update={"rules": {"round_number": RuleSettings(enabled=True)}}
    )
    engine = RuleEngine(config)
    params = FeatureParams()
    # Every account's summaries kept from one transaction to the next, as the rule replicas keep
    # them (the vectors are checked against computing each afresh).
    summaries = SummaryCache(min_items=1)
    policy = PolicyConfig()
    state = LocalContextBuilder(
        [ShardState(cold_start_complete=True), ShardState(cold_start_complete=True)],
        graph=TransferGraph(),
    )
    for lo in range(0, len(txs), BATCH):
        batch = list(txs[lo : lo + BATCH])
        contexts = state.contexts(batch)
        lines: dict[str, list[str]] = {
            "contexts": [],
            "features": [],
            "rules": [],
            "decisions": [],
            "fired": [],
        }
        evaluations = engine.evaluate_batch(list(zip(batch, contexts, strict=True)))
        for tx, ctx, evaluation in zip(batch, contexts, evaluations, strict=True):
            lines["contexts"].append(_context_line(ctx))
            features = compute_features(tx, ctx, params=params)
            assert tuple(features) == FEATURE_NAMES
            vector = feature_vector(tx, ctx, params=params, summaries=summaries)
            assert vector == list(features.values())
            lines["features"].append(repr(vector))
            lines["rules"].append(_evaluation_line(evaluation))
            lines["fired"].extend(h.rule_id for h in evaluation.hits)
            u = _unit_hash("shadow", tx.id)
            decision = decide(
                tx,
                evaluation,
                _model_results(tx, features),
                config=policy,
                decided_at=DECIDED_AT,
                shadow_scores={"anomaly:challenger": u} if u < 0.3 else None,
            )
            lines["decisions"].append(_decision_line(decision))
            if decision.alert:
                rewritten = with_anomaly_explanation(
                    decision,
                    [
                        FeatureContribution(
                            feature="amount", value=features["amount"], contribution=2.5
                        )
                    ],
                    basis="vs this customer's own baseline",
                    usual={"amount": 1_000.0 + 1_000.0 * _unit_hash("usual", tx.id)},
                )
                lines["decisions"].append(_decision_line(rewritten))
        yield lines


def _context_line(ctx: HistoryContext) -> str:
    parts = [
        [o.id for o in ctx.account],
        [o.id for o in ctx.counterparty],
        [o.id for o in ctx.agent],
        [o.id for o in ctx.client],
        [(e.src, e.dst, repr(e.amount), e.at.isoformat(), e.tx_id) for e in ctx.edges],
    ]
    return repr(parts)


def _hit_fields(h: RuleHit) -> tuple[Any, ...]:
    return (h.rule_id, h.category, repr(h.severity), repr(h.values), h.description)


def _evaluation_line(e: RuleEvaluation) -> str:
    return repr((repr(e.score), e.config_version, [_hit_fields(h) for h in e.hits]))


def _scorer_fields(r: ScorerResult) -> tuple[Any, ...]:
    return (
        r.scorer,
        r.available,
        repr(r.score),
        r.model_version,
        r.reason,
        [(c.feature, repr(c.value), repr(c.contribution)) for c in r.contributions],
    )


def _decision_line(d: Decision) -> str:
    return repr(
        (
            d.transaction_id,
            d.tenant,
            repr(d.score),
            d.risk_level.value,
            d.alert,
            d.decided_at.isoformat(),
            [_scorer_fields(r) for r in d.scorers],
            [_hit_fields(h) for h in d.rule_hits],
            d.feature_set_version,
            d.rule_config_version,
            sorted((k, repr(v)) for k, v in d.shadow_scores.items()),
            d.explanation,
        )
    )


def _digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def compute_golden() -> dict[str, Any]:
    """Per-batch digests of every stage plus counts that show what the stream exercises."""
    txs = golden_stream()
    batches: list[dict[str, str]] = []
    fired: Counter[str] = Counter()
    alerts = 0
    for lines in score_stream(txs):
        fired.update(lines.pop("fired"))
        batches.append({stage: _digest(v) for stage, v in lines.items()})
        for line in lines["decisions"]:
            alerts += "(alert)" in line
    return {
        "transactions": len(txs),
        "batch": BATCH,
        "alerting_decision_lines": alerts,
        "rule_hits": dict(sorted(fired.items())),
        "batches": batches,
    }


def test_scoring_core_outputs_match_the_golden_digest() -> None:
    expected = json.loads(GOLDEN.read_text())
    actual = compute_golden()
    assert actual["transactions"] == expected["transactions"]
    assert actual["rule_hits"] == expected["rule_hits"]
    assert actual["alerting_decision_lines"] == expected["alerting_decision_lines"]
    for i, (got, want) in enumerate(zip(actual["batches"], expected["batches"], strict=True)):
        for stage in ("contexts", "features", "rules", "decisions"):
            assert got[stage] == want[stage], f"batch {i}: {stage} differ from the golden digest"


def test_golden_stream_exercises_most_rules() -> None:
    # A digest of a stream on which nothing fires would guard nothing.
    expected = json.loads(GOLDEN.read_text())
    assert len(expected["rule_hits"]) >= 20
    assert expected["alerting_decision_lines"] > 100


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(compute_golden(), indent=1) + "\n")
    print(f"written to {GOLDEN}")
