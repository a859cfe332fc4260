"""MLflow tracking and registry shared by every training job.

The local tracking store is SQLite at ``<data_dir>/mlflow/mlflow.db`` with artifacts under
``<data_dir>/mlflow/artifacts`` (MLflow 3 refuses new work on the plain-file store);
``MLFLOW_TRACKING_URI`` points every job at a shared server instead. Experiments are created with
an explicit ``artifact_location`` so artifacts never land in the process's working directory.

Runs are logged from the driver with :class:`~mlflow.tracking.MlflowClient` (explicit run ids, no
global "active run"), so Tune trials can be logged as nested runs after tuning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aml.domain import utcnow

CHAMPION_ALIAS = "champion"
SHADOW_ALIAS = "shadow"
_MAX_PARAM_LENGTH = 6000


def mlflow_dir(data_dir: Path) -> Path:
    """Directory of the local tracking store and its artifacts."""
    return data_dir.resolve() / "mlflow"


def default_tracking_uri(data_dir: Path) -> str:
    """The local SQLite tracking store under ``data_dir`` (directory created if needed)."""
    root = mlflow_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root(data_dir: Path) -> Path:
    """Where experiments created by this product keep their artifacts."""
    return mlflow_dir(data_dir) / "artifacts"


def resolve_tracking_uri(data_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the local store under ``data_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(data_dir)


def ensure_experiment(client: Any, name: str, data_dir: Path) -> str:
    """Id of experiment ``name``, created with its artifacts under ``data_dir`` when missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = artifact_root(data_dir) / name
    location.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(name, artifact_location=location.as_uri()))


def _param(value: Any) -> str:
    text = (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
    return text[:_MAX_PARAM_LENGTH]


@dataclass
class Tracker:
    """One experiment of one tracking store.

    Attributes:
        client: an ``MlflowClient``.
        experiment_id: the experiment runs are logged to.
        data_dir: the product's data directory (for staging files).
    """

    client: Any
    experiment_id: str
    data_dir: Path

    @classmethod
    def open(cls, data_dir: Path, experiment: str, *, tracking_uri: str | None = None) -> Tracker:
        """Connect to the tracking store (see :func:`resolve_tracking_uri`) and experiment."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri or resolve_tracking_uri(data_dir))
        return cls(client, ensure_experiment(client, experiment, data_dir), data_dir)

    def log_run(
        self,
        *,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        artifacts: Iterable[Path] = (),
        parent_run_id: str | None = None,
        at: datetime | None = None,
        finish: bool = True,
    ) -> str:
        """Create a run with its params, metrics, tags and artifact files; return its id.

        A ``parent_run_id`` makes it a nested run (how the MLflow UI groups Tune trials).
        """
        from mlflow.entities import Metric, Param

        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = str(run.info.run_id)
        stamp = int((at or utcnow()).timestamp() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, _param(v)) for k, v in (params or {}).items()],
        )
        for path in artifacts:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(run_id, str(path))
        if finish:
            self.client.set_terminated(run_id)
        return run_id

    def artifact_uri(self, run_id: str) -> str:
        """Root artifact URI of a run."""
        return str(self.client.get_run(run_id).info.artifact_uri)

    def register(
        self, name: str, *, run_id: str, source: str, tags: Mapping[str, str] | None = None
    ) -> str:
        """Register ``source`` (an artifact URI of the run) as a new version of model ``name``.

        Returns:
            The registry version number (as text).
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags=dict(tags or {})
        )
        return str(version.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` (e.g. ``champion``) of registered model ``name`` at ``version``."""
        self.client.set_registered_model_alias(name, alias, version)

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None``."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None
