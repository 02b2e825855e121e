"""One way to reach the MLflow server, failing fast when it is down."""

from __future__ import annotations

import os


def mlflow_client(tracking_uri: str):
    """An `MlflowClient` for `tracking_uri` (also its prompt and model registry)."""
    # MLflow's defaults retry a down server for minutes and wait 120 s per request.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
