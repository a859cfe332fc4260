"""Adapters that load public labelled data into domain transactions.

Both data sets are read from ``../shared/data`` (never copied into the project). Timestamps are
derived deterministically from the data's own time index so replays are reproducible.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aml.domain import (
    ActorType,
    Direction,
    Transaction,
    TransactionStatus,
    TransactionType,
    stable_id,
)
from aml.money import to_minor

DATA_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

_PAYSIM_TYPES: dict[str, tuple[TransactionType, Direction]] = {
    "CASH_IN": (TransactionType.DEPOSIT, Direction.IN),
    "CASH_OUT": (TransactionType.WITHDRAWAL, Direction.OUT),
    "DEBIT": (TransactionType.WITHDRAWAL, Direction.OUT),
    "PAYMENT": (TransactionType.PAYMENT, Direction.OUT),
    "TRANSFER": (TransactionType.TRANSFER, Direction.OUT),
}


def _jitter_seconds(key: str, span: int) -> int:
    """Deterministic offset in [0, span) so rows sharing a time index get distinct times."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % span


@dataclass(frozen=True, slots=True)
class LabelledTransaction:
    tx: Transaction
    label: int  # 1 = fraud / laundering


def load_paysim(
    path: Path | None = None,
    *,
    currency: str = "XAF",
    limit: int | None = None,
    tenant: str = "paysim",
) -> Iterator[LabelledTransaction]:
    """PaySim rows as transactions of the originating account, labelled by ``isFraud``.

    ``step`` is an hour index; balances are kept in ``attributes`` (they leak the label, so
    experiments report results with and without them).
    """
    path = path or DATA_ROOT / "paysim-small" / "transactions.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                return
            tx_type, direction = _PAYSIM_TYPES[row["action"]]
            key = f"paysim|{i}"
            at = EPOCH + timedelta(hours=int(row["step"]), seconds=_jitter_seconds(key, 3600))
            dest = row["nameDest"]
            tx = Transaction(
                id=stable_id(tenant, key),
                tenant=tenant,
                dedupe_key=key,
                source="import",
                type=tx_type,
                direction=direction,
                amount_minor=to_minor(row["amount"], currency),
                currency=currency,
                occurred_at=at,
                received_at=at,
                account_id=f"paysim:{row['nameOrig']}",
                client_id=row["nameOrig"],
                counterparty_account_id=f"paysim:{dest}" if dest else None,
                counterparty_client_id=dest or None,
                actor_type=ActorType.CUSTOMER,
                merchant_id=dest if dest.startswith("M") else None,
                status=TransactionStatus.PENDING,
                attributes={
                    "old_balance_orig": float(row["oldBalanceOrig"]),
                    "new_balance_orig": float(row["newBalanceOrig"]),
                    "old_balance_dest": float(row["oldBalanceDest"]),
                    "new_balance_dest": float(row["newBalanceDest"]),
                    "step": int(row["step"]),
                },
            )
            yield LabelledTransaction(tx, int(row["isFraud"]))


@dataclass(frozen=True, slots=True)
class AmlSimData:
    transactions: list[Transaction]
    fraud_accounts: frozenset[str]  # account ids labelled as laundering
    fraud_step: dict[str, int]

    def transaction_labels(self) -> dict[str, int]:
        """Account labels carried to transactions: a fraud account's outgoing transfers from its
        ``fraudStep`` (day index) on; ``fraudStep`` -1 marks all of them."""
        return {
            tx.id: int(
                tx.account_id in self.fraud_accounts
                and (tx.occurred_at - EPOCH).days >= self.fraud_step[tx.account_id]
            )
            for tx in self.transactions
        }


def load_amlsim(
    root: Path | None = None, *, currency: str = "USD", tenant: str = "amlsim"
) -> AmlSimData:
    """AMLSim transfers (``time`` is a day index) with per-account labels from ``nodes.csv``."""
    root = root or DATA_ROOT / "amlsim-fanin-cycle"
    fraud: set[str] = set()
    fraud_step: dict[str, int] = {}
    with open(root / "nodes.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["isFraud"] == "1":
                acct = f"amlsim:{row['nodeid']}"
                fraud.add(acct)
                fraud_step[acct] = int(row["fraudStep"])
    txs: list[Transaction] = []
    with open(root / "transactions.csv", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            key = f"amlsim|{i}"
            at = EPOCH + timedelta(days=int(row["time"]), seconds=_jitter_seconds(key, 86_400))
            src, dst = row["sourceNodeId"], row["targetNodeId"]
            txs.append(
                Transaction(
                    id=stable_id(tenant, key),
                    tenant=tenant,
                    dedupe_key=key,
                    source="import",
                    type=TransactionType.TRANSFER,
                    direction=Direction.OUT,
                    amount_minor=to_minor(row["value"], currency),
                    currency=currency,
                    occurred_at=at,
                    received_at=at,
                    account_id=f"amlsim:{src}",
                    client_id=src,
                    counterparty_account_id=f"amlsim:{dst}",
                    counterparty_client_id=dst,
                )
            )
    txs.sort(key=lambda t: (t.occurred_at, t.id))
    return AmlSimData(txs, frozenset(fraud), fraud_step)


def load_labelled_file(
    path: Path, *, currency: str = "XAF"
) -> tuple[list[Transaction], dict[str, int]]:
    """Transactions and 0/1 labels from a file, for backtests on data outside the store.

    Recognised by name: PaySim's ``*.csv.gz`` (``isFraud``), an AMLSim directory (``nodes.csv`` +
    ``transactions.csv``), or JSON lines of transaction documents (the store's own field names,
    ISO datetimes) with an optional ``label`` field per line.
    """
    import json

    from storage.codec import from_doc

    if path.is_dir() and (path / "nodes.csv").exists():
        data = load_amlsim(path)
        return data.transactions, data.transaction_labels()
    if path.name.endswith(".csv.gz"):
        rows = list(load_paysim(path, currency=currency))
        return [r.tx for r in rows], {r.tx.id: r.label for r in rows}
    txs: list[Transaction] = []
    labels: dict[str, int] = {}
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            doc = json.loads(line)
            label = doc.pop("label", None)
            for key in ("occurred_at", "received_at"):
                if isinstance(doc.get(key), str):
                    doc[key] = datetime.fromisoformat(doc[key])
            try:
                tx = from_doc(Transaction, {"_id": doc.pop("id", None), **doc})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a transaction document: {exc}") from None
            txs.append(tx)
            if label is not None:
                labels[tx.id] = int(label)
    return txs, labels
