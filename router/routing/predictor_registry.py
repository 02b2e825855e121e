"""The quality predictor in MLflow's model registry, as data.

A registered version is a JSON document (router/routing/predictor.py's PredictorDocument) logged as
the artifact `router_model/predictor.json` of a run, with its SHA-256 recorded as the version's tag
`ragyard.sha256` at registration. Loading by alias downloads that one file, checks its hash against
the tag (and against RAGYARD_ROUTER__ROUTING_MODEL_SHA256 when the operator pins one) and validates
it: nothing is unpickled or imported, so a registry that someone else can write to cannot run code
in the router. A version that is not such a document (a pyfunc model, say) is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from router.routing.predictor import FORMAT, FORMAT_VERSION, PredictorDocument, QualityPredictor

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "router_model"
DOCUMENT = "predictor.json"
FORMAT_TAG = "ragyard.format"
HASH_TAG = "ragyard.sha256"


class UntrustedPredictor(ValueError):
    """A registered version the router refuses to load: not our format, or not the bytes registered."""


def model_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def _format_id() -> str:
    return f"{FORMAT}/{FORMAT_VERSION}"


def document_bytes(predictor: QualityPredictor) -> bytes:
    return predictor.document().model_dump_json(indent=1).encode()


def document_sha256(predictor: QualityPredictor) -> str:
    """What RAGYARD_ROUTER__ROUTING_MODEL_SHA256 pins for this predictor once registered."""
    return hashlib.sha256(document_bytes(predictor)).hexdigest()


def _client(tracking_uri: str):
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def register_predictor(
    predictor: QualityPredictor,
    tracking_uri: str,
    name: str,
    alias: str,
    run_id: str | None = None,
    description: str = "",
) -> str:
    """Log `predictor` as a JSON document, register it as a new version of `name`, point `alias` at it.

    Returns the version. With `run_id` the document is logged into that run (the router eval's);
    otherwise into a run of its own in the "ragyard-router" experiment.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    body = document_bytes(predictor)
    if run_id is None:
        mlflow.set_experiment("ragyard-router")
    with mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name="router-model") as run:
        mlflow.log_text(body.decode(), f"{ARTIFACT_DIR}/{DOCUMENT}")
        source = f"{run.info.artifact_uri}/{ARTIFACT_DIR}"
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            name,
            source,
            run_id=run.info.run_id,
            tags={
                FORMAT_TAG: _format_id(),
                HASH_TAG: hashlib.sha256(body).hexdigest(),
                "ragyard.trained_on": ",".join(f"{m}={n}" for m, n in predictor.trained_on.items()),
            },
            description=description or None,
        ).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)


def load_predictor(tracking_uri: str, name: str, alias: str, pinned_sha256: str = "") -> QualityPredictor:
    """The predictor registered as `name` under `alias`. Raises MlflowException when there is none and
    UntrustedPredictor when the version is not our document, or not the bytes that were registered."""
    import mlflow

    client = _client(tracking_uri)
    version = client.get_model_version_by_alias(name, alias)
    where = f"{model_uri(name, alias)} (version {version.version})"
    if version.tags.get(FORMAT_TAG) != _format_id():
        raise UntrustedPredictor(f"{where} is not a {_format_id()} document: the router loads no other kind of model")
    recorded = version.tags.get(HASH_TAG, "")
    if pinned_sha256 and recorded != pinned_sha256:
        raise UntrustedPredictor(f"{where} has SHA-256 {recorded}, the router is pinned to {pinned_sha256}")
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source}/{DOCUMENT}", dst_path=folder)
        body = Path(path).read_bytes()
    actual = hashlib.sha256(body).hexdigest()
    if actual != recorded:
        raise UntrustedPredictor(f"{where}: its document's SHA-256 is {actual}, {recorded} was registered")
    try:
        document = PredictorDocument.model_validate_json(body)
    except ValidationError as exc:
        raise UntrustedPredictor(f"{where} is not a valid predictor document: {exc}") from exc
    logger.info("loaded the quality predictor %s, SHA-256 %s", where, actual)
    return QualityPredictor.from_document(document)
