"""Backtest: replay labelled transactions in time order through the production scoring pieces.

The replay uses the in-process pipeline (:class:`serve.scoring.pipeline.ScoringCore` configured
with the same ``user_config`` dicts as Serve) and rebuilds per-customer state as it goes with
:class:`actors.customer_state.LocalContextBuilder` (no store behind it: a window starts empty
and fills from the replay), so every transaction sees exactly the earlier ones, as it would have
live. Attempts and corrections are dropped as serving drops them.

Reported per rule and overall: alerts, alert rate, precision and recall over the labelled rows,
and AUPRC of every score that exists (final, rules, anomaly, XGBoost). Unlabelled transactions
count in alerts and alert rates but not in precision or recall. Output: a Markdown table, JSON
and a self-contained HTML page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.domain import Decision, Transaction
from serve.scoring.pipeline import ScoringCore, scorable

DEFAULT_BATCH = 256


@dataclass(frozen=True)
class Counts:
    """Alert counts of one rule (or of the final decision) over the replay."""

    name: str
    alerts: int
    alert_rate: float
    labelled_alerts: int
    true_positives: int
    precision: float | None  # None when it raised no alert on a labelled row
    recall: float | None  # None when there is no labelled positive


@dataclass
class BacktestReport:
    transactions: int
    labelled: int
    positives: int
    overall: Counts
    rules: list[Counts]
    auprc: dict[str, float | None]
    versions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def rows(self) -> list[Counts]:
        return [self.overall, *self.rules]

    def to_markdown(self) -> str:
        """The report as a Markdown table (also what the CLI prints)."""
        head = (
            f"{self.transactions} transactions replayed, {self.labelled} labelled, "
            f"{self.positives} positive\n\n"
            "| rule | alerts | alert rate | precision | recall |\n|---|---:|---:|---:|---:|\n"
        )
        body = "".join(
            f"| {c.name} | {c.alerts} | {_pct(c.alert_rate)} | {_pct(c.precision)} | "
            f"{_pct(c.recall)} |\n"
            for c in self.rows()
        )
        scores = "\n| score | AUPRC |\n|---|---:|\n" + "".join(
            f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |\n" for k, v in self.auprc.items()
        )
        return head + body + scores

    def to_html(self) -> str:
        """A self-contained HTML page of the report."""
        cells = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (c.name, c.alerts, _pct(c.alert_rate), _pct(c.precision), _pct(c.recall))
            )
            + "</tr>"
            for c in self.rows()
        )
        scores = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{'n/a' if v is None else f'{v:.4f}'}</td></tr>"
            for k, v in self.auprc.items()
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Backtest</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body><h1>Backtest</h1>"
            f"<p>{self.transactions} transactions replayed, {self.labelled} labelled, "
            f"{self.positives} positive.</p><table><tr><th>rule</th><th>alerts</th>"
            f"<th>alert rate</th><th>precision</th><th>recall</th></tr>{cells}</table>"
            f"<h2>AUPRC</h2><table><tr><th>score</th><th>AUPRC</th></tr>{scores}</table>"
            "</body></html>"
        )

    def write(self, directory: Path, name: str = "backtest") -> dict[str, Path]:
        """Write ``<name>.json``, ``<name>.md`` and ``<name>.html``; return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        out = {
            "json": directory / f"{name}.json",
            "markdown": directory / f"{name}.md",
            "html": directory / f"{name}.html",
        }
        out["json"].write_text(self.to_json())
        out["markdown"].write_text(self.to_markdown())
        out["html"].write_text(self.to_html())
        return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def replay(
    transactions: Sequence[Transaction], core: ScoringCore, *, batch_size: int = DEFAULT_BATCH
) -> list[tuple[Transaction, Decision]]:
    """Decide every scorable transaction in time order with state rebuilt by the replay."""
    ordered = sorted(scorable(transactions), key=lambda t: (t.occurred_at, t.id))
    state = LocalContextBuilder([ShardState(cold_start_complete=True)], graph=TransferGraph())
    out: list[tuple[Transaction, Decision]] = []
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        contexts = state.contexts(batch)
        # The clock of a replayed decision is the transaction's own time, not now.
        decisions = core.score(batch, contexts, decided_at=batch[-1].occurred_at)
        out.extend(zip(batch, decisions, strict=True))
    return out


def _counts(name: str, fired: Sequence[bool], labels: Sequence[int | None]) -> Counts:
    n = len(fired)
    alerts = sum(fired)
    labelled_alerts = sum(1 for f, y in zip(fired, labels, strict=True) if f and y is not None)
    tp = sum(1 for f, y in zip(fired, labels, strict=True) if f and y == 1)
    positives = sum(1 for y in labels if y == 1)
    return Counts(
        name=name,
        alerts=alerts,
        alert_rate=alerts / n if n else 0.0,
        labelled_alerts=labelled_alerts,
        true_positives=tp,
        precision=tp / labelled_alerts if labelled_alerts else None,
        recall=tp / positives if positives else None,
    )


def _auprc(scores: Sequence[float | None], labels: Sequence[int | None]) -> float | None:
    from sklearn.metrics import average_precision_score

    pairs = [(s, y) for s, y in zip(scores, labels, strict=True) if s is not None and y is not None]
    ys = [y for _, y in pairs]
    if len(set(ys)) < 2:
        return None
    return float(average_precision_score(np.asarray(ys), np.asarray([s for s, _ in pairs])))


def evaluate(
    decided: Sequence[tuple[Transaction, Decision]], labels: Mapping[str, int]
) -> BacktestReport:
    """Per-rule and overall counts and the AUPRC of every score (pure)."""
    ys: list[int | None] = [labels.get(tx.id) for tx, _ in decided]
    overall = _counts("all (decision alert)", [d.alert for _, d in decided], ys)
    rule_ids = sorted({h.rule_id for _, d in decided for h in d.rule_hits})
    rules = [
        _counts(rid, [any(h.rule_id == rid for h in d.rule_hits) for _, d in decided], ys)
        for rid in rule_ids
    ]
    scores: dict[str, list[float | None]] = {"final": [d.score for _, d in decided]}
    versions: dict[str, Any] = {}
    for _, d in decided:
        for s in d.scorers:
            scores.setdefault(s.scorer, [])
            if s.model_version:
                versions.setdefault(s.scorer, s.model_version)
    for name in list(scores):
        if name == "final":
            continue
        scores[name] = [
            next((s.score for s in d.scorers if s.scorer == name and s.available), None)
            for _, d in decided
        ]
    labelled = [y for y in ys if y is not None]
    return BacktestReport(
        transactions=len(decided),
        labelled=len(labelled),
        positives=sum(labelled),
        overall=overall,
        rules=rules,
        auprc={k: _auprc(v, ys) for k, v in scores.items()},
        versions=versions,
    )


def backtest(
    transactions: Sequence[Transaction],
    labels: Mapping[str, int],
    *,
    rules_config: Mapping[str, Any] | None = None,
    anomaly_model: str | Mapping[str, Any] | None = None,
    xgboost_model: str | Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> BacktestReport:
    """Replay ``transactions`` through the rules and models and report against ``labels``.

    Args:
        transactions: the transactions (any order; attempts and corrections are skipped).
        labels: 0/1 per transaction id (others are unlabelled).
        rules_config: a ``RuleConfig`` dict (default: the shipped defaults).
        anomaly_model, xgboost_model: model specs as in the scorers' ``user_config.model``.
        pipeline: the ``ScoringPipeline`` user_config (policy, feature parameters).
        batch_size: transactions per replayed batch.
    """
    core = ScoringCore.from_user_configs(
        rules={"rule_config": dict(rules_config)} if rules_config else None,
        anomaly={"model": anomaly_model} if anomaly_model else None,
        xgboost={"model": xgboost_model} if xgboost_model else None,
        pipeline=pipeline,
    )
    return evaluate(replay(transactions, core, batch_size=batch_size), labels)
