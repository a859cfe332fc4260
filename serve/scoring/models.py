"""Model artifacts for the anomaly and XGBoost scorers: load, check the feature list, score.

An artifact is described by a *spec*, a plain mapping (the form it takes in Serve's
``user_config``) or a path:

* a path to a ``.joblib`` file written by :func:`save_anomaly_artifact` (``training.fit_anomaly``);
* a path to a ``.json`` manifest, or a mapping, with ``kind`` (``"anomaly"``/``"xgboost"``),
  ``version``, ``features`` (the model's input columns, in order) and ``path`` (the model file,
  relative to the manifest). This is how externally trained models are brought in: an XGBoost
  model saved in its native format (``.json``/``.ubj``), or a scikit-learn anomaly estimator
  dumped with joblib plus a ``calibrator`` (the dict form of
  :class:`aml.calibration.QuantileCalibrator`).

A model whose feature list differs from :data:`aml.features.FEATURE_NAMES` (names or order) is
refused with :class:`ModelFeatureMismatch`, which names the missing and unexpected features:
scoring it would silently feed columns to the wrong inputs. Artifacts are pickles or native model
files from the operator's own model store; never load them from an untrusted location.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from aml.calibration import QuantileCalibrator
from aml.domain import FeatureContribution, ScorerResult, fast_init
from aml.errors import ConfigError
from aml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from serve.scoring.forest import score_samples_of

ANOMALY = "anomaly"
XGBOOST = "xgboost"
TOP_K = 3

Matrix = npt.NDArray[np.float64]
ModelSpec = str | Path | Mapping[str, Any]

# Every scored transaction gets a result and a few contributions from each model: built with
# the fast constructors (a frozen dataclass's own ``__init__`` cost more than the model).
_new_contribution = fast_init(FeatureContribution)
_new_result = fast_init(ScorerResult)


class ModelFeatureMismatch(ConfigError):
    """The model was trained on other features than this build computes."""

    code = "model_feature_mismatch"


def check_features(features: Sequence[str], *, source: str) -> tuple[str, ...]:
    """Return ``features`` as a tuple when it is exactly :data:`FEATURE_NAMES`.

    Raises:
        ModelFeatureMismatch: naming the model, the missing and the unexpected features.
    """
    got = tuple(str(f) for f in features)
    if got == FEATURE_NAMES:
        return got
    missing = [f for f in FEATURE_NAMES if f not in got]
    unexpected = [f for f in got if f not in FEATURE_NAMES]
    detail = (
        f"missing {missing}, unexpected {unexpected}"
        if missing or unexpected
        else "same names in a different order"
    )
    raise ModelFeatureMismatch(
        f"model {source} was trained on a different feature list than feature set "
        f"{FEATURE_SET_VERSION} ({detail}); retrain it on the current features",
        source=source,
        missing=missing,
        unexpected=unexpected,
    )


@dataclass(frozen=True)
class ResultBlock:
    """A model's results for a batch in arrays: scores and, per row, the ``k`` features with the
    largest ``|weight|``.

    What a model scorer replica sends back: its results as objects (one result and three
    contributions a transaction) cost the replica their construction and pickling and the
    pipeline their unpickling, more than the model itself; arrays cross as buffers, and
    :meth:`results` builds the objects once, where the policy reads them.

    Attributes:
        scorer, model_version: as on every result.
        features: the model's feature names (``top`` indexes them).
        scores: one score per row, in ``[0, 1]``.
        top, values, weights: ``(rows, k)``: feature index, its value and its weight, by
            decreasing ``|weight|``.
    """

    scorer: str
    model_version: str
    features: tuple[str, ...]
    scores: Matrix
    top: npt.NDArray[np.intp]
    values: Matrix
    weights: Matrix

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def of(
        cls,
        scorer: str,
        model_version: str,
        features: tuple[str, ...],
        scores: Matrix,
        values: Matrix,
        weights: Matrix,
    ) -> ResultBlock:
        """The block of ``scores`` explained by the ``k`` largest ``|weights|`` of each row."""
        k = min(TOP_K, weights.shape[1]) if len(weights) else 0
        if k == 0:
            empty = np.zeros((len(scores), 0))
            return cls(scorer, model_version, features, scores, empty.astype(np.intp), empty, empty)
        # argpartition then a small sort: linear in the feature count, vectorised over the batch.
        top = np.argpartition(-np.abs(weights), k - 1, axis=1)[:, :k]
        rows = np.arange(weights.shape[0])[:, None]
        order = np.argsort(-np.abs(weights[rows, top]), axis=1)
        top = top[rows, order]
        return cls(
            scorer, model_version, features, scores, top, values[rows, top], weights[rows, top]
        )

    def slice(self, start: int, stop: int) -> ResultBlock:
        """Rows ``start:stop`` (the results of one of several stacked requests)."""
        return ResultBlock(
            self.scorer,
            self.model_version,
            self.features,
            self.scores[start:stop],
            self.top[start:stop],
            self.values[start:stop],
            self.weights[start:stop],
        )

    def results(self) -> list[ScorerResult]:
        """One result per row; contributions with a zero weight are left out."""
        names, scorer, version = self.features, self.scorer, self.model_version
        # Converted once: indexing numpy scalars cell by cell cost more than the ranking.
        explained = [
            tuple(
                _new_contribution(feature=names[i], value=v, contribution=w)
                for i, v, w in zip(idx, vs, ws, strict=True)
                if w != 0.0
            )
            for idx, vs, ws in zip(
                self.top.tolist(), self.values.tolist(), self.weights.tolist(), strict=True
            )
        ]
        return [
            _new_result(
                scorer=scorer,
                available=True,
                score=s,
                model_version=version,
                contributions=c,
            )
            for s, c in zip(self.scores.tolist(), explained, strict=True)
        ]


@dataclass(frozen=True)
class AnomalyModel:
    """Isolation Forest behind a scaler, with a calibrator fitted on its training scores.

    Attributes:
        estimator: a fitted scikit-learn estimator with ``score_samples`` (higher = more normal,
            as scikit-learn defines it); usually ``Pipeline(StandardScaler, IsolationForest)``.
        calibrator: maps the raw anomaly score (``-score_samples``) to [0, 1] so that the
            configured alert rate holds on traffic like the training data.
        center, scale: the population baseline used for explanations (training mean and
            standard deviation of every feature).
    """

    version: str
    features: tuple[str, ...]
    estimator: Any
    calibrator: QuantileCalibrator
    center: tuple[float, ...]
    scale: tuple[float, ...]
    kind: str = ANOMALY
    # ``estimator.score_samples``, or the same scores computed faster (serve.scoring.forest).
    _score_samples: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._score_samples is None:
            object.__setattr__(self, "_score_samples", score_samples_of(self.estimator))

    def raw_scores(self, x: Matrix) -> Matrix:
        """Raw anomaly scores, higher = more anomalous."""
        return -np.asarray(self._score_samples(x), dtype=np.float64)

    def score(self, x: Matrix) -> list[ScorerResult]:
        """Calibrated scores with the features furthest from the baseline as explanation.

        The explanation is the standardised distance of each feature from the training
        population (``(x - mean) / std``): the anomaly model has no per-feature attribution
        of its own, and the population baseline is available without any extra I/O.
        """
        if len(x) == 0:
            return []
        return self.score_block(x).results()

    def score_block(self, x: Matrix) -> ResultBlock:
        """:meth:`score` as arrays (see :class:`ResultBlock`)."""
        calibrated = np.asarray(self.calibrator.transform(self.raw_scores(x)), dtype=np.float64)
        z = (x - np.asarray(self.center)) / np.asarray(self.scale)
        return ResultBlock.of(
            ANOMALY, self.version, self.features, np.clip(calibrated, 0.0, 1.0), x, z
        )


@dataclass(frozen=True)
class XGBoostModel:
    """A binary XGBoost booster (probability of a confirmed-suspicious label)."""

    version: str
    features: tuple[str, ...]
    booster: Any  # xgboost.Booster
    kind: str = XGBOOST

    def score(self, x: Matrix) -> list[ScorerResult]:
        """Probabilities with ``pred_contribs`` (SHAP values) as explanation."""
        if len(x) == 0:
            return []
        return self.score_block(x).results()

    def score_block(self, x: Matrix) -> ResultBlock:
        """:meth:`score` as arrays (see :class:`ResultBlock`)."""
        import xgboost as xgb

        dm = xgb.DMatrix(x, feature_names=list(self.features))
        probs = np.asarray(self.booster.predict(dm), dtype=np.float64)
        # Last column of pred_contribs is the bias term, not a feature.
        contribs = np.asarray(self.booster.predict(dm, pred_contribs=True))[:, :-1]
        return ResultBlock.of(
            XGBOOST, self.version, self.features, np.clip(probs, 0.0, 1.0), x, contribs
        )


LoadedModel = AnomalyModel | XGBoostModel


def no_model(scorer: str, count: int, reason: str = "no model") -> list[ScorerResult]:
    """The results of a scorer that cannot score (never a score of 0).

    One immutable result ``count`` times: pickled once per batch (pickle keeps one copy of an
    object named many times), where a result per transaction crossed to the pipeline one by one.
    """
    return [_new_result(scorer=scorer, available=False, reason=reason)] * count


def _baseline(estimator: Any, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    scaler = getattr(estimator, "named_steps", {}).get("standardscaler") or getattr(
        estimator, "named_steps", {}
    ).get("scaler")
    if scaler is not None and hasattr(scaler, "mean_"):
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        return tuple(float(v) for v in scaler.mean_), tuple(float(v) for v in scale)
    return (0.0,) * n, (1.0,) * n


def _anomaly_from(data: Mapping[str, Any], estimator: Any, source: str) -> AnomalyModel:
    features = check_features(data.get("features", ()), source=source)
    cal = data.get("calibrator")
    if cal is None:
        raise ConfigError(
            f"anomaly model {source} has no calibrator: its raw scores cannot be turned into "
            "an alert rate",
            source=source,
        )
    calibrator = cal if isinstance(cal, QuantileCalibrator) else QuantileCalibrator.from_dict(cal)
    if "center" in data and "scale" in data:
        center = tuple(float(v) for v in data["center"])
        scale = tuple(float(v) if float(v) > 0 else 1.0 for v in data["scale"])
    else:
        center, scale = _baseline(estimator, len(features))
    return AnomalyModel(
        version=str(data.get("version", "unversioned")),
        features=features,
        estimator=estimator,
        calibrator=calibrator,
        center=center,
        scale=scale,
    )


def _xgboost_from(data: Mapping[str, Any], model_path: Path | None, source: str) -> XGBoostModel:
    import xgboost as xgb

    booster = data.get("booster")
    if booster is None:
        if model_path is None:
            raise ConfigError(f"xgboost model {source} names no model file", source=source)
        booster = xgb.Booster()
        booster.load_model(str(model_path))
    declared = data.get("features") or booster.feature_names or ()
    features = check_features(declared, source=source)
    if booster.feature_names and tuple(booster.feature_names) != features:
        check_features(booster.feature_names, source=source)
    return XGBoostModel(
        version=str(data.get("version", "unversioned")), features=features, booster=booster
    )


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load and validate a model artifact (see the module docstring for the spec forms).

    Raises:
        ConfigError: the spec is incomplete, names an unknown kind, or the file is unreadable.
        ModelFeatureMismatch: the model's features differ from :data:`FEATURE_NAMES`.
    """
    base = Path(".")
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        source = str(path)
        if not path.exists():
            raise ConfigError(f"model artifact {source} does not exist", source=source)
        if path.suffix == ".json":
            data: Mapping[str, Any] = json.loads(path.read_text())
            base = path.parent
        else:
            loaded = joblib.load(path)
            if not isinstance(loaded, Mapping):
                raise ConfigError(f"model artifact {source} is not a model bundle", source=source)
            data = loaded
    else:
        data = spec
        source = str(data.get("path") or data.get("version") or "<inline>")
    kind = data.get("kind")
    file = data.get("path")
    model_path = (base / str(file)) if file else None
    if model_path is not None and not model_path.exists():
        raise ConfigError(f"model file {model_path} does not exist", source=source)
    if kind == ANOMALY:
        estimator = data.get("estimator")
        if estimator is None:
            if model_path is None:
                raise ConfigError(f"anomaly model {source} names no model file", source=source)
            estimator = joblib.load(model_path)
        return _anomaly_from(data, estimator, source)
    if kind == XGBOOST:
        return _xgboost_from(data, model_path, source)
    raise ConfigError(f"model {source} has unknown kind {kind!r}", source=source)


def save_anomaly_artifact(
    path: Path,
    *,
    version: str,
    estimator: Any,
    calibrator: QuantileCalibrator,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an anomaly model bundle that :func:`load_model` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    center, scale = _baseline(estimator, len(FEATURE_NAMES))
    bundle = {
        "kind": ANOMALY,
        "version": version,
        "features": list(FEATURE_NAMES),
        "feature_set_version": FEATURE_SET_VERSION,
        "estimator": estimator,
        "calibrator": calibrator.to_dict(),
        "center": list(center),
        "scale": list(scale),
        **(extra or {}),
    }
    joblib.dump(bundle, path)
    return path
