"""A quality predictor: expected answer quality of each catalog model, given routing features.

One small linear regressor per model (standard-scaled features, ridge regression, clipped to [0, 1]),
fitted on logged outcomes: an outcome is (features, model, quality in [0, 1]). Per-model fits let
each model have its own slopes, so the predictor can say "the small model copes when the retrieval
is confident" rather than shifting every model by the same amount.

A fitted predictor is numbers only: per model the scaler's means and scales, the coefficients and
the intercept. It is stored and loaded as a JSON document (router/routing/predictor_registry.py),
never as pickled code: whoever can write to the registry can at worst register a bad route, never
run code in the router.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router.routing.features import FEATURE_NAMES

MIN_OUTCOMES_PER_MODEL = 5
FORMAT = "ragyard.quality-predictor"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Outcome:
    """One logged answer: its request's features, the model that answered, how good it was."""

    features: dict[str, float]
    model: str
    quality: float
    source: str = ""  # "eval:<run>" or "langfuse:<trace id>", for the record


class UnknownModel(KeyError):
    """The predictor was not trained on this model."""


class LinearModel(BaseModel):
    """One model's regressor: quality = ((x - mean) / scale) . coef + intercept, clipped to [0, 1]."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    trained_on: int = Field(ge=MIN_OUTCOMES_PER_MODEL)

    @model_validator(mode="after")
    def _one_number_per_feature(self) -> LinearModel:
        if not (len(self.mean) == len(self.scale) == len(self.coef) == len(FEATURE_NAMES)):
            raise ValueError(f"mean, scale and coef need one number per feature ({len(FEATURE_NAMES)})")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scales must be positive")
        return self


class PredictorDocument(BaseModel):
    """A QualityPredictor as stored: the features it reads, in order, and one LinearModel per model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(pattern=f"^{FORMAT}$")
    version: int = Field(ge=FORMAT_VERSION, le=FORMAT_VERSION)
    features: list[str]
    models: dict[str, LinearModel] = Field(min_length=1)

    @field_validator("features")
    @classmethod
    def _our_features(cls, features: list[str]) -> list[str]:
        if tuple(features) != FEATURE_NAMES:
            raise ValueError(f"made for the features {features}, this router computes {list(FEATURE_NAMES)}")
        return features


class QualityPredictor:
    def __init__(self, models: dict[str, LinearModel]):
        self.linear = models

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.linear)

    @property
    def trained_on(self) -> dict[str, int]:
        """Outcomes per model."""
        return {name: m.trained_on for name, m in self.linear.items()}

    @classmethod
    def fit(cls, outcomes: Iterable[Outcome], alpha: float = 1.0) -> QualityPredictor:
        from sklearn.linear_model import Ridge  # scikit-learn only where a predictor is fitted
        from sklearn.preprocessing import StandardScaler

        by_model: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_model.setdefault(outcome.model, []).append(outcome)
        too_few = {m: len(rows) for m, rows in by_model.items() if len(rows) < MIN_OUTCOMES_PER_MODEL}
        if not by_model or too_few:
            raise ValueError(f"need at least {MIN_OUTCOMES_PER_MODEL} outcomes per model; got {too_few or 'none'}")
        fitted = {}
        for model, rows in by_model.items():
            scaler = StandardScaler().fit(feature_matrix([r.features for r in rows]))
            ridge = Ridge(alpha=alpha).fit(
                scaler.transform(feature_matrix([r.features for r in rows])), np.array([r.quality for r in rows])
            )
            fitted[model] = LinearModel(
                mean=scaler.mean_.tolist(),
                scale=scaler.scale_.tolist(),  # StandardScaler's scale is 1 for a constant feature, never 0
                coef=ridge.coef_.tolist(),
                intercept=float(ridge.intercept_),
                trained_on=len(rows),
            )
        return cls(fitted)

    def predict(self, features: Sequence[dict[str, float]], model: str) -> np.ndarray:
        """Predicted quality in [0, 1] of `model` for each feature row."""
        if model not in self.linear:
            raise UnknownModel(f"the router model was not trained on {model!r}; it knows {list(self.linear)}")
        m = self.linear[model]
        scaled = (feature_matrix(features) - np.array(m.mean)) / np.array(m.scale)
        return np.clip(scaled @ np.array(m.coef) + m.intercept, 0.0, 1.0)

    def document(self) -> PredictorDocument:
        return PredictorDocument(
            format=FORMAT, version=FORMAT_VERSION, features=list(FEATURE_NAMES), models=self.linear
        )

    @classmethod
    def from_document(cls, document: PredictorDocument) -> QualityPredictor:
        return cls(dict(document.models))


def feature_matrix(rows: Sequence[dict[str, float]]) -> np.ndarray:
    return np.array([[float(row[name]) for name in FEATURE_NAMES] for row in rows], dtype=float)
