"""Replay the AMLSim fan-in/cycle data set through the rule engine and report recall per typology.

Data: ``transactions.csv`` (sourceNodeId, targetNodeId, value, time = day index) and
``nodes.csv`` (nodeid, isFraud, ...) from ``/work/shared/data/amlsim-fanin-cycle/`` (read in
place, never copied). Every row becomes one transfer recorded twice, as Fineract does for an
account transfer: the debit on the sender's account and the credit on the receiver's. Amounts
are USD; each row gets a deterministic time of day inside its day.

The replay keeps incremental point-in-time state (7-day per-account windows and an
:class:`aml.graph.EdgeIndex`), builds the same :class:`aml.history.HistoryContext` that
``build_context`` would, and runs :class:`aml.rules.RuleEngine` with the shipped defaults.

Typology labels are not in the file, so they are recovered from its structure: the simulator's
pattern transfers are the only ones below 100 USD (ordinary transfers are 100-600 USD); see
:func:`label_typologies`.

Run: ``.venv/bin/python -m bench.amlsim_rules [--data DIR] [--out FILE] [--limit N]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.customer_state import DEFAULT_GRAPH_HOPS
from aml.domain import Direction, Transaction, TransactionType
from aml.graph import EdgeIndex, GraphSearch
from aml.history import (
    COUNTERPARTY_LOOKBACK,
    MAX_LOOKBACK,
    HistoryContext,
    TransferEdge,
    build_context,
)
from aml.money import to_minor
from aml.rules import RULE_IDS, RuleConfig, RuleEngine, default_rule_config
from aml.rules.catalog import edge_of

DATA_DIR = Path("/work/shared/data/amlsim-fanin-cycle")
OUT_FILE = Path(__file__).parent / "results" / "amlsim-rules.md"
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
PATTERN_MAX_VALUE = 100.0
ALERT_SCORE = 0.5

RELEVANT: dict[str, frozenset[str]] = {
    "cycle": frozenset({"circular_transfer", "stacking", "rapid_pair_transfers"}),
    "fan-in": frozenset(
        {
            "fan_in",
            "cross_account_structuring",
            "scatter_gather",
            "bipartite_layering",
            "rapid_pair_transfers",
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Row:
    index: int
    src: int
    dst: int
    value: float
    day: int


def load_rows(path: Path, limit: int | None = None) -> list[Row]:
    rows: list[Row] = []
    with path.open(newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                break
            src, dst = int(r["sourceNodeId"]), int(r["targetNodeId"])
            rows.append(Row(i, src, dst, float(r["value"]), int(r["time"])))
    return rows


def load_fraud(path: Path) -> set[int]:
    with path.open(newline="") as fh:
        return {int(r["nodeid"]) for r in csv.DictReader(fh) if r["isFraud"] == "1"}


def account(node: int) -> str:
    return f"savings:{node}"


def occurred_at(row: Row) -> datetime:
    """The row's day plus a deterministic second of that day."""
    digest = hashlib.blake2b(str(row.index).encode(), digest_size=4).digest()
    return DAY0 + timedelta(days=row.day - 1, seconds=int.from_bytes(digest) % 86_400)


def to_transactions(row: Row) -> tuple[Transaction, Transaction]:
    """The debit on the sender's account and the credit on the receiver's."""
    at = occurred_at(row)
    debit = Transaction(
        id=f"r{row.index}d",
        tenant="amlsim",
        dedupe_key=f"amlsim|{row.index}|d",
        source="import",
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        amount_minor=to_minor(str(row.value), "USD"),
        currency="USD",
        occurred_at=at,
        received_at=at,
        account_id=account(row.src),
        counterparty_account_id=account(row.dst),
    )
    credit = debit.replace(
        id=f"r{row.index}c",
        dedupe_key=f"amlsim|{row.index}|c",
        direction=Direction.IN,
        account_id=account(row.dst),
        counterparty_account_id=account(row.src),
    )
    return debit, credit


def label_typologies(rows: Sequence[Row], fraud: set[int]) -> dict[int, str]:
    """Typology per fraud account, recovered from the pattern transfers' structure.

    The simulator passes one fixed amount round a ring (each leg repeated with exactly that
    amount), while fan-in senders send varying small amounts. A pattern leg whose transfers all
    carry one amount that an adjacent leg (sharing an account) also carries is a ring leg; its
    accounts are "cycle". Other pattern accounts are "fan-in"; fraud accounts with no pattern
    transfer are "unobserved".
    """
    amounts: dict[tuple[int, int], set[float]] = defaultdict(set)
    for r in rows:
        if r.value < PATTERN_MAX_VALUE:
            amounts[(r.src, r.dst)].add(r.value)
    pattern_nodes = {n for pair in amounts for n in pair}
    by_amount: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for pair, values in amounts.items():
        if len(values) == 1:
            by_amount[next(iter(values))].append(pair)
    on_ring: set[int] = set()
    for pairs in by_amount.values():
        touches = Counter(n for pair in pairs for n in pair)
        for a, b in pairs:
            if touches[a] > 1 or touches[b] > 1:
                on_ring.update((a, b))
    labels: dict[int, str] = {}
    for node in fraud:
        if node in on_ring:
            labels[node] = "cycle"
        elif node in pattern_nodes:
            labels[node] = "fan-in"
        else:
            labels[node] = "unobserved"
    return labels


@dataclass
class Replay:
    """Incremental point-in-time state: what an account actor and the graph actor hold."""

    config: RuleConfig
    windows: dict[str, deque[Transaction]] = field(default_factory=lambda: defaultdict(deque))
    index: EdgeIndex = field(init=False)
    search: GraphSearch = field(init=False)

    def __post_init__(self) -> None:
        self.search = RuleEngine(self.config).graph_search
        p = self.config.params
        span = max(p.cycle_window_hours * 60, p.stacking_window_minutes)
        self.index = EdgeIndex(timedelta(minutes=span), max_edges=500_000)

    def _recent(self, acct: str | None, at: datetime, span: timedelta) -> list[Transaction]:
        if acct is None:
            return []
        win = self.windows[acct]
        while win and win[0].occurred_at < at - MAX_LOOKBACK:
            win.popleft()
        return [o for o in win if o.occurred_at >= at - span]

    def context(self, tx: Transaction, edges: list[TransferEdge]) -> HistoryContext:
        return HistoryContext(
            account=self._recent(tx.account_id, tx.occurred_at, MAX_LOOKBACK),
            counterparty=self._recent(
                tx.counterparty_account_id, tx.occurred_at, COUNTERPARTY_LOOKBACK
            ),
            agent=(),
            edges=edges,
        )

    def near(self, tx: Transaction) -> list[TransferEdge]:
        """The transfer's edges for the graph rules, as the transfer-graph actor hands them out
        (its own cycle and chain searches over the index)."""
        e = edge_of(tx)
        if e is None:
            return []
        return self.index.rule_edges(e, self.search, max_hops=DEFAULT_GRAPH_HOPS + 1)

    def record(self, tx: Transaction) -> None:
        self.windows[tx.account_id].append(tx)
        if tx.counterparty_account_id and tx.counterparty_account_id != tx.account_id:
            self.windows[tx.counterparty_account_id].append(tx)
        # One edge per transfer: the credit mirrors the debit.
        e = edge_of(tx)
        if e is not None and tx.direction is Direction.OUT:
            self.index.add(e)


@dataclass
class Outcome:
    evaluated: int = 0
    with_hits: int = 0
    alerts: int = 0
    rule_tx: Counter[str] = field(default_factory=Counter)
    rule_accounts: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    seconds: float = 0.0
    parity_checked: int = 0


def check_parity(tx: Transaction, ctx: HistoryContext, state: Replay) -> None:
    """The incremental context must equal ``build_context`` over the same candidates."""
    candidates = [*state.windows[tx.account_id]]
    if tx.counterparty_account_id and tx.counterparty_account_id != tx.account_id:
        candidates += state.windows[tx.counterparty_account_id]
    ref = build_context(tx, list({o.id: o for o in candidates}.values()), edges=ctx.edges)
    for name in ("account", "counterparty", "edges"):
        if list(getattr(ref, name)) != list(getattr(ctx, name)):
            raise AssertionError(f"{name} history of {tx.id} differs from build_context")


def replay(rows: Sequence[Row], config: RuleConfig, parity_every: int = 0) -> Outcome:
    """Evaluate every transaction in time order; every ``parity_every``-th context is checked
    against ``build_context``."""
    engine = RuleEngine(config)
    state = Replay(config)
    txs = [t for r in rows for t in to_transactions(r)]
    txs.sort(key=lambda t: (t.occurred_at, t.id))
    out = Outcome()
    started = time.perf_counter()
    for i, tx in enumerate(txs):
        ctx = state.context(tx, state.near(tx))
        if parity_every and i % parity_every == 0:
            check_parity(tx, ctx, state)
            out.parity_checked += 1
        ev = engine.evaluate(tx, ctx)
        state.record(tx)
        out.evaluated += 1
        if ev.hits:
            out.with_hits += 1
        if ev.score >= ALERT_SCORE:
            out.alerts += 1
        node = int(tx.account_id.split(":")[1])
        for h in ev.hits:
            out.rule_tx[h.rule_id] += 1
            out.rule_accounts[h.rule_id].add(node)
    out.seconds = time.perf_counter() - started
    return out


def _flagged(out: Outcome, rules: Iterable[str] | None) -> set[int]:
    keys = out.rule_accounts.keys() if rules is None else rules
    flagged: set[int] = set()
    for r in keys:
        flagged |= out.rule_accounts.get(r, set())
    return flagged


def _pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f} %" if den else "n/a"


def ring_facts(rows: Sequence[Row], labels: dict[int, str]) -> Counter[str]:
    """Rings (pattern legs of one amount between cycle accounts): closed in the data or not,
    and how many days their legs are spread over."""
    legs: dict[float, set[tuple[int, int]]] = defaultdict(set)
    days: dict[float, list[int]] = defaultdict(list)
    for r in rows:
        if r.value < PATTERN_MAX_VALUE and labels.get(r.src) == labels.get(r.dst) == "cycle":
            legs[r.value].add((r.src, r.dst))
            days[r.value].append(r.day)
    facts: Counter[str] = Counter()
    for value, pairs in legs.items():
        if len(pairs) < 2:
            continue
        facts["rings"] += 1
        closed = {a for a, _ in pairs} == {b for _, b in pairs}
        if closed:
            facts["closed"] += 1
            if max(days[value]) - min(days[value]) <= 3:
                facts["closed within 3 days"] += 1
    return facts


def circular_only(config: RuleConfig, window_hours: int) -> RuleConfig:
    """``config`` with only ``circular_transfer`` on and the given cycle window."""
    data = config.to_dict()
    data["params"]["cycle_window_hours"] = window_hours
    data["rules"] = {r: {"enabled": r == "circular_transfer"} for r in RULE_IDS}
    return RuleConfig.model_validate(data)


def report(
    rows: Sequence[Row],
    fraud: set[int],
    labels: dict[int, str],
    out: Outcome,
    config: RuleConfig,
    wide: tuple[int, Outcome] | None = None,
) -> str:
    nodes = {r.src for r in rows} | {r.dst for r in rows}
    fraud_seen = fraud & nodes
    lines = [
        "# AMLSim fan-in / cycle: rule engine replay",
        "",
        f"Data: `{DATA_DIR}` ({len(rows):,} transfers, {len(nodes):,} accounts, "
        f"{len(fraud_seen):,} labelled fraud). Each transfer is evaluated twice (debit and "
        f"credit side): {out.evaluated:,} evaluations in {out.seconds:.0f} s "
        f"({out.evaluated / max(out.seconds, 1e-9):,.0f} per second, one process); "
        f"{out.parity_checked:,} incremental contexts checked equal to `build_context`.",
        f"Rule configuration: shipped defaults, version {config.version}, USD thresholds "
        f"(large {config.thresholds['USD'].large_amount:,.0f} USD).",
        "",
        "## Recall per typology (account caught if any of its transactions raised a relevant rule)",
        "",
        "| typology | accounts | relevant rules | caught (relevant) | recall (relevant) "
        "| caught (any rule) | recall (any rule) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    any_flagged = _flagged(out, None)
    for typ in ("cycle", "fan-in", "unobserved"):
        members = {n for n, t in labels.items() if t == typ and n in nodes}
        rel = RELEVANT.get(typ, frozenset(RELEVANT["cycle"] | RELEVANT["fan-in"]))
        caught = members & _flagged(out, rel)
        caught_any = members & any_flagged
        lines.append(
            f"| {typ} | {len(members):,} | {', '.join(sorted(rel))} | {len(caught):,} | "
            f"{_pct(len(caught), len(members))} | {len(caught_any):,} | "
            f"{_pct(len(caught_any), len(members))} |"
        )
    relevant_all = frozenset().union(*RELEVANT.values())
    flagged_rel = _flagged(out, relevant_all)
    lines += [
        "",
        "## Alert rate and precision",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| evaluations with at least one hit | {_pct(out.with_hits, out.evaluated)} |",
        f"| evaluations with rule score >= {ALERT_SCORE} | {_pct(out.alerts, out.evaluated)} |",
        f"| accounts flagged by a typology rule | {len(flagged_rel):,} of {len(nodes):,} |",
        f"| account precision, typology rules | "
        f"{_pct(len(flagged_rel & fraud), len(flagged_rel))} |",
        f"| account recall, typology rules (all fraud) | "
        f"{_pct(len(flagged_rel & fraud_seen), len(fraud_seen))} |",
        f"| account precision, any rule | {_pct(len(any_flagged & fraud), len(any_flagged))} |",
        "",
        "## Per rule",
        "",
        "| rule | transactions hit | accounts flagged | of which fraud | precision |",
        "|---|---:|---:|---:|---:|",
    ]
    for rule, count in out.rule_tx.most_common():
        accts = out.rule_accounts[rule]
        lines.append(
            f"| {rule} | {count:,} | {len(accts):,} | {len(accts & fraud):,} | "
            f"{_pct(len(accts & fraud), len(accts))} |"
        )
    rings = ring_facts(rows, labels)
    cycle_members = {n for n, t in labels.items() if t == "cycle" and n in nodes}
    fan_members = {n for n, t in labels.items() if t == "fan-in" and n in nodes}
    pairs = out.rule_accounts.get("rapid_pair_transfers", set())
    senders: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        if r.value < PATTERN_MAX_VALUE and r.dst in fan_members:
            senders[r.dst].add(r.src)
    widest = max((len(v) for v in senders.values()), default=0)
    p = config.params
    lines += [
        "",
        "## Reading the numbers",
        "",
        f"- `circular_transfer` reports only time-respecting cycles (each hop after the one "
        f"before, all within {p.cycle_window_hours} h, amounts within "
        f"{p.cycle_amount_tolerance:.0%} hop to hop). Of the {rings['rings']:,} rings in the "
        f"data only {rings['closed']:,} are closed (every account both receives and sends a "
        f"leg; the others miss a leg, so there is no cycle to find) and "
        f"{rings['closed within 3 days']:,} of those have all legs within 3 days. "
        f"{len(cycle_members & pairs):,} of {len(cycle_members):,} cycle accounts are caught "
        "by `rapid_pair_transfers` because each leg is repeated within a day.",
        f"- The widest fan-in target receives pattern transfers from {widest} distinct senders "
        f"over the whole period, below the {p.fan_min}-senders-in-{p.fan_window_hours}-h "
        f"`fan_in` threshold; {len(fan_members & pairs):,} of {len(fan_members):,} fan-in "
        "accounts are caught by `rapid_pair_transfers` (repeated same-day transfers to one "
        "target).",
        f"- `unusual_hours` hit {_pct(out.rule_tx['unusual_hours'], out.evaluated)} of the "
        "evaluations because this replay spreads times uniformly over the day; real traffic "
        "is mostly daytime.",
        "- Typology labels are recovered from structure (`label_typologies`): ring legs carry "
        "one repeated amount, fan-in legs varying ones; fraud accounts with no pattern "
        "transfer are unobserved. Pattern transfers are the only ones below 100 USD here; no "
        "rule uses that, so it does not help recall.",
    ]
    cycle_members = {n for n, t in labels.items() if t == "cycle" and n in nodes}
    rows_c = [(p.cycle_window_hours, out)] + ([wide] if wide else [])
    lines += [
        "",
        "## `circular_transfer` alone on cycle accounts, by cycle window",
        "",
        "| window | cycle accounts caught | recall | accounts flagged | precision |",
        "|---|---:|---:|---:|---:|",
    ]
    for hours, o in rows_c:
        flagged = o.rule_accounts.get("circular_transfer", set())
        lines.append(
            f"| {hours} h | {len(flagged & cycle_members):,} | "
            f"{_pct(len(flagged & cycle_members), len(cycle_members))} | {len(flagged):,} | "
            f"{_pct(len(flagged & fraud), len(flagged))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument(
        "--parity-every", type=int, default=500, help="check every Nth context (0: never)"
    )
    args = parser.parse_args(argv)
    rows = load_rows(args.data / "transactions.csv", args.limit)
    fraud = load_fraud(args.data / "nodes.csv")
    labels = label_typologies(rows, fraud)
    config = default_rule_config()
    out = replay(rows, config, parity_every=args.parity_every)
    wide_hours = 7 * 24
    wide = replay(rows, circular_only(config, wide_hours))
    text = report(rows, fraud, labels, out, config, (wide_hours, wide))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
