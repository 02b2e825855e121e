"""A quality predictor: expected answer quality of each catalog model, given routing features.

One small regressor per model (standard-scaled features, ridge regression, clipped to [0, 1]),
fitted on logged outcomes: an outcome is (features, model, quality in [0, 1]). Per-model fits
let each model have its own slopes, so the predictor can say "the small model copes when the
retrieval is confident" rather than shifting every model by the same amount.

It is registered in the MLflow model registry as a pyfunc model (input: a DataFrame of the
FEATURE_NAMES columns plus a `model` column; output: predicted quality) and loaded by alias,
`models:/ragyard-router@production` by default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from router.routing.features import FEATURE_NAMES

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted
    from sklearn.pipeline import Pipeline

MIN_OUTCOMES_PER_MODEL = 5


@dataclass(frozen=True)
class Outcome:
    """One logged answer: its request's features, the model that answered, how good it was."""

    features: dict[str, float]
    model: str
    quality: float
    source: str = ""  # "eval:<run>" or "langfuse:<trace id>", for the record


class UnknownModel(KeyError):
    """The predictor was not trained on this model."""


class QualityPredictor:
    def __init__(self, pipelines: dict[str, Pipeline], trained_on: dict[str, int]):
        self.pipelines = pipelines
        self.trained_on = trained_on  # outcomes per model

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.pipelines)

    @classmethod
    def fit(cls, outcomes: Iterable[Outcome], alpha: float = 1.0) -> QualityPredictor:
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        by_model: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_model.setdefault(outcome.model, []).append(outcome)
        too_few = {m: len(rows) for m, rows in by_model.items() if len(rows) < MIN_OUTCOMES_PER_MODEL}
        if not by_model or too_few:
            raise ValueError(f"need at least {MIN_OUTCOMES_PER_MODEL} outcomes per model; got {too_few or 'none'}")
        pipelines = {}
        for model, rows in by_model.items():
            pipeline = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
            pipeline.fit(feature_matrix([r.features for r in rows]), np.array([r.quality for r in rows]))
            pipelines[model] = pipeline
        return cls(pipelines, {m: len(rows) for m, rows in by_model.items()})

    def predict(self, features: Sequence[dict[str, float]], model: str) -> np.ndarray:
        """Predicted quality in [0, 1] of `model` for each feature row."""
        if model not in self.pipelines:
            raise UnknownModel(f"the router model was not trained on {model!r}; it knows {list(self.pipelines)}")
        return np.clip(self.pipelines[model].predict(feature_matrix(features)), 0.0, 1.0)


def feature_matrix(rows: Sequence[dict[str, float]]) -> np.ndarray:
    return np.array([[float(row[name]) for name in FEATURE_NAMES] for row in rows], dtype=float)


# ---- MLflow model registry --------------------------------------------------------------------


def _pyfunc_class():
    from mlflow.pyfunc import PythonModel

    class RouterQualityModel(PythonModel):
        """The pyfunc face of a QualityPredictor: rows of features and a `model` column in, quality out."""

        def __init__(self, predictor: QualityPredictor):
            self.predictor = predictor

        def predict(self, context, model_input, params=None):
            out = np.zeros(len(model_input))
            records = model_input.to_dict("records")
            for model in set(model_input["model"]):
                index = [i for i, r in enumerate(records) if r["model"] == model]
                out[index] = self.predictor.predict([records[i] for i in index], model)
            return out

    return RouterQualityModel


def model_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def register_predictor(
    predictor: QualityPredictor,
    tracking_uri: str,
    name: str,
    alias: str,
    run_id: str | None = None,
    description: str = "",
) -> str:
    """Log `predictor` as a pyfunc model, register a new version of `name`, point `alias` at it.

    Returns the version. With `run_id` the model is logged into that run (the router eval's);
    otherwise into a run of its own in the "ragyard-router" experiment.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    import mlflow
    import pandas as pd
    import sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    example = pd.DataFrame([{**{n: 0.0 for n in FEATURE_NAMES}, "model": predictor.models[0]}])
    signature = infer_signature(example, np.zeros(1))
    if run_id is None:
        mlflow.set_experiment("ragyard-router")
    with mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name="router-model"):
        info = mlflow.pyfunc.log_model(
            name="router_model",
            python_model=_pyfunc_class()(predictor),
            signature=signature,
            # Listed, not inferred: inference loads the model in a subprocess, slow and needless here.
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
            registered_model_name=name,
            tags={"ragyard.trained_on": ",".join(f"{m}={n}" for m, n in predictor.trained_on.items())},
        )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if description:
        client.update_model_version(name, version, description=description)
    client.set_registered_model_alias(name, alias, version)
    return version


def load_predictor(tracking_uri: str, name: str, alias: str) -> QualityPredictor:
    """The QualityPredictor registered as `name` under `alias` (raises MlflowException if none)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    import mlflow

    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(model_uri(name, alias))
    return loaded.unwrap_python_model().predictor
