"""Point-in-time labelled data sets for supervised training and backtests.

Labels come from analysts' verdicts on alerts (``confirmed_fraud``/``suspicious`` = 1,
``legitimate`` = 0; a later verdict on the same transaction wins) and, to bootstrap before there
are verdicts, from CSV/Parquet files of ``transaction_id,label`` (analyst verdicts override them).

Features are computed by :func:`aml.features.feature_frame` over the labelled transactions *and*
their accounts' history from ``MAX_LOOKBACK`` before the account's first labelled transaction, so
early rows get the context serving had; every row sees only strictly earlier transactions, so
nothing from the future leaks in. Splits are by ``occurred_at``: train < validation < test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aml.domain import AnalystDecision, Transaction, TransactionStatus
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureParams, feature_frame
from aml.history import MAX_LOOKBACK
from storage.store import Store

_MONEY = frozenset({TransactionStatus.PENDING, TransactionStatus.SCORED})
POSITIVE = frozenset({AnalystDecision.CONFIRMED_FRAUD, AnalystDecision.SUSPICIOUS})

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[np.int64]


def labels_from_verdicts(
    verdicts: Iterable[tuple[Sequence[str], AnalystDecision]],
) -> dict[str, int]:
    """Transaction labels from ``(transaction ids, verdict)`` pairs, oldest verdict first (the
    order :meth:`AlertRepository.labels` returns): a later verdict overrides an earlier one."""
    out: dict[str, int] = {}
    for tx_ids, verdict in verdicts:
        for tx_id in tx_ids:
            out[tx_id] = int(verdict in POSITIVE)
    return out


def read_label_file(path: Path) -> dict[str, int]:
    """Labels from a ``transaction_id,label`` CSV or Parquet file (label 0 or 1).

    Raises:
        Unprocessable: naming the file when columns are missing or a label is not 0/1.
    """
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    if not {"transaction_id", "label"} <= set(frame.columns):
        raise Unprocessable(f"{path} needs columns transaction_id,label", file=str(path))
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not labels.isin([0, 1]).all():
        raise Unprocessable(f"{path}: every label must be 0 or 1", file=str(path))
    return dict(zip(frame["transaction_id"].astype(str), labels.astype(int), strict=True))


async def load_labels(
    store: Store, *, since: datetime | None = None, files: Sequence[Path] = ()
) -> dict[str, int]:
    """Bootstrap labels from ``files`` overridden by analysts' verdicts stored since ``since``."""
    labels: dict[str, int] = {}
    for path in files:
        labels.update(read_label_file(path))
    labels.update(labels_from_verdicts(await store.alerts.labels(since=since)))
    return labels


async def load_with_history(store: Store, tx_ids: Sequence[str]) -> list[Transaction]:
    """The labelled transactions plus every stored movement of their accounts from
    ``MAX_LOOKBACK`` before each account's first labelled transaction to its last one."""
    labelled = await store.transactions.get_many(list(tx_ids))
    spans: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for tx in labelled:
        spans[(tx.tenant, tx.account_id)].append(tx.occurred_at)
    seen = {tx.id: tx for tx in labelled}
    for (tenant, account), times in spans.items():
        history = await store.transactions.history(
            tenant,
            account,
            since=min(times) - MAX_LOOKBACK,
            until=max(times),
            limit=1_000_000,
        )
        for tx in history:
            seen.setdefault(tx.id, tx)
    return list(seen.values())


async def load_window(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
    page: int = 5_000,
) -> list[Transaction]:
    """Every stored transaction in ``[since, until)`` (backtests ``--from-store``, drift)."""
    out: list[Transaction] = []
    skip = 0
    while True:
        txs, total = await store.transactions.search(
            tenant=tenant, since=since, until=until, skip=skip, limit=page
        )
        out.extend(txs)
        skip += len(txs)
        if not txs or skip >= total:
            return out


async def window_frame(
    store: Store,
    *,
    since: datetime,
    until: datetime,
    params: FeatureParams,
    tenant: str | None = None,
) -> pd.DataFrame:
    """Point-in-time features of the transactions stored in ``[since, until)`` (their
    accounts' earlier history loaded so the first rows have full context)."""
    window = await load_window(store, since=since, until=until, tenant=tenant)
    recent = [t for t in window if t.status in _MONEY]  # what serving scores
    if not recent:
        return pd.DataFrame(columns=list(FEATURE_NAMES), dtype=np.float64)
    txs = await load_with_history(store, [t.id for t in recent])
    frame = feature_frame(txs, params=params)
    return frame.loc[[t.id for t in recent if t.id in frame.index], list(FEATURE_NAMES)]


@dataclass(frozen=True)
class LabelledSet:
    """Feature rows of labelled transactions in time order.

    Attributes:
        frame: float features indexed by transaction id, columns ``FEATURE_NAMES`` then any
            extra columns.
        labels: 0/1 per row.
        occurred_at: each row's transaction time (UTC, aware).
    """

    frame: pd.DataFrame
    labels: Vector
    occurred_at: pd.DatetimeIndex

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def x(self) -> Matrix:
        out: Matrix = self.frame.to_numpy(dtype=np.float64)
        return out

    def take(self, mask: npt.NDArray[np.bool_]) -> LabelledSet:
        return LabelledSet(self.frame[mask], self.labels[mask], self.occurred_at[mask])

    def summary(self) -> dict[str, Any]:
        """Size, positives and time range (logged with every model)."""
        return {
            "rows": len(self),
            "positives": int(self.labels.sum()),
            "positive_rate": float(self.labels.mean()) if len(self) else 0.0,
            "from": self.occurred_at.min().isoformat() if len(self) else None,
            "until": self.occurred_at.max().isoformat() if len(self) else None,
            "feature_set_version": FEATURE_SET_VERSION,
            "columns": list(self.frame.columns),
        }


def build_dataset(
    txs: Sequence[Transaction],
    labels: Mapping[str, int],
    *,
    params: FeatureParams,
    extra: Mapping[str, Mapping[str, float]] | None = None,
) -> LabelledSet:
    """Point-in-time features of the labelled members of ``txs`` (the rest is history).

    Args:
        txs: labelled transactions and their history, in any order.
        labels: label per transaction id; transactions without a label are history only.
        params: feature parameters (the scorers' ``features`` user_config).
        extra: additional columns ``{column: {transaction id: value}}`` (benchmarks only: the
            scorers compute ``FEATURE_NAMES`` and nothing else).

    Returns:
        The rows of labelled transactions, sorted by ``(occurred_at, id)``.
    """
    frame = feature_frame(txs, params=params)
    by_id = {tx.id: tx for tx in txs}
    keep = sorted(
        (tx_id for tx_id in frame.index if tx_id in labels),
        key=lambda i: (by_id[i].occurred_at, i),
    )
    frame = frame.loc[keep, list(FEATURE_NAMES)]
    for column, values in (extra or {}).items():
        frame[column] = [float(values.get(i, 0.0)) for i in keep]
    y = np.asarray([int(labels[i]) for i in keep], dtype=np.int64)
    times = pd.DatetimeIndex([by_id[i].occurred_at for i in keep])
    return LabelledSet(frame, y, times)


async def build_from_store(
    store: Store,
    *,
    params: FeatureParams,
    since: datetime | None = None,
    label_files: Sequence[Path] = (),
) -> LabelledSet:
    """Labels from the store (and files), history from the store, point-in-time features.

    Raises:
        Unprocessable: no labelled transaction is stored.
    """
    labels = await load_labels(store, since=since, files=label_files)
    txs = await load_with_history(store, list(labels))
    present = {tx.id for tx in txs} & set(labels)
    if not present:
        raise Unprocessable("no labelled transaction found in the store", labels=len(labels))
    return build_dataset(txs, {i: labels[i] for i in present}, params=params)


@dataclass(frozen=True)
class DatasetSplit:
    """Time-ordered train / validation / test parts."""

    train: LabelledSet
    validation: LabelledSet
    test: LabelledSet

    def summary(self) -> dict[str, Any]:
        return {
            "train": self.train.summary(),
            "validation": self.validation.summary(),
            "test": self.test.summary(),
        }


def time_split(
    data: LabelledSet,
    *,
    validation_from: datetime | None = None,
    test_from: datetime | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> DatasetSplit:
    """Split by transaction time: ``train < validation_from <= validation < test_from <= test``.

    Without explicit cut times, they are taken at the given fractions of the rows (rows sharing
    the cut's timestamp all go to the later part, so no time is in two parts).

    Raises:
        Unprocessable: a part would be empty.
    """
    times = data.occurred_at
    if validation_from is None or test_from is None:
        n = len(data)
        if n < 3:
            raise Unprocessable("need at least 3 labelled rows to split", rows=n)
        i_val = int(n * (1.0 - validation_fraction - test_fraction))
        i_test = int(n * (1.0 - test_fraction))
        validation_from = validation_from or times[min(max(i_val, 1), n - 2)].to_pydatetime()
        test_from = test_from or times[min(max(i_test, 2), n - 1)].to_pydatetime()
    t_val = pd.Timestamp(validation_from)
    t_test = pd.Timestamp(test_from)
    train = np.asarray(times < t_val)
    test = np.asarray(times >= t_test)
    validation = ~train & ~test
    split = DatasetSplit(data.take(train), data.take(validation), data.take(test))
    for name, part in (
        ("train", split.train),
        ("validation", split.validation),
        ("test", split.test),
    ):
        if len(part) == 0:
            raise Unprocessable(f"the {name} split is empty", split=name)
    return split
