"""Evals as Dagster assets, downstream of the vector index: results as metadata and asset checks.

The evals' own code location (evals/definitions.py), beside the ingestion's: the eval assets depend
on the ingestion's `vector_index` by its asset key, so neither package imports the other.
One asset per eval in `evals.asset_evals` (those present in this checkout). Materializing one runs
the eval through the harness (each run an MLflow run) and reports its metrics as metadata. Every
eval asset checks that its runs reached MLflow intact; the retrieval asset also carries the
regression gate (evals/baseline.py). A sensor launches the eval job after `vector_index` is
materialized, once per (index version, settings) pair: a run that changed nothing re-evaluates
nothing.
"""

import hashlib
import json
from typing import Any

import dagster as dg

from evals.baseline import check_regression, gated_run_id
from evals.harness import HarnessResult, available_evals, common_params, run_eval
from ragyard.settings import Settings
from ragyard.tracking import mlflow_client

GROUP = "evals"
LOGGED_CHECK = "logged_to_mlflow"
GATE_CHECK = "regression_gate"
# The ingestion's index asset (pipelines/assets.py), in the other code location.
INDEX_ASSET = dg.AssetKey("vector_index")


def _run_url(settings: Settings, client, run_id: str) -> str:
    experiment_id = client.get_run(run_id).info.experiment_id
    return f"{settings.mlflow.url}/#/experiments/{experiment_id}/runs/{run_id}"


def _metadata(result: HarnessResult, settings: Settings, client) -> dict:
    metadata: dict = {
        "experiment": result.experiment,
        "summary": dg.MetadataValue.md(result.report.summary_markdown),
        "index_version": str(common_params(settings)["index_version"]),
        "quick": settings.evals.asset_quick,
    }
    for run, run_id in zip(result.report.runs, result.run_ids, strict=True):
        metadata[f"{run.name}/mlflow_run"] = dg.MetadataValue.url(_run_url(settings, client, run_id))
        for metric, value in run.metrics.items():
            metadata[f"{run.name}/{metric}"] = float(value)
    return metadata


def _logged_check(result: HarnessResult, client) -> dg.AssetCheckResult:
    """Every run is FINISHED in MLflow with every metric the eval computed, at the value it computed."""
    problems = []
    for run, run_id in zip(result.report.runs, result.run_ids, strict=True):
        logged = client.get_run(run_id)
        if logged.info.status != "FINISHED":
            problems.append(f"{run.name}: status {logged.info.status}")
        for metric, value in run.metrics.items():
            if abs(logged.data.metrics.get(metric, float("nan")) - float(value)) > 1e-9:
                problems.append(f"{run.name}: metric {metric} missing or different")
    return dg.AssetCheckResult(
        check_name=LOGGED_CHECK, passed=not problems, metadata={"runs": len(result.run_ids), "problems": problems[:20]}
    )


def _gate_check(result: HarnessResult, settings: Settings, client) -> dg.AssetCheckResult:
    gate = check_regression(client, gated_run_id(result, settings), settings)
    metadata: dict[str, Any] = {
        "metric": gate.metric,
        "current": gate.current,
        "margin": gate.margin,
        "run_id": gate.run_id,
        "message": gate.message,
    }
    if gate.baseline is not None:
        metadata |= {"baseline": gate.baseline, "delta": gate.delta, "baseline_run_id": gate.baseline_run_id}
    return dg.AssetCheckResult(check_name=GATE_CHECK, passed=gate.passed, metadata=metadata, description=gate.message)


def make_eval_asset(name: str, settings: Settings) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"{name}_eval")
    checks = [
        dg.AssetCheckSpec(
            LOGGED_CHECK, asset=key, description="Every eval run reached MLflow, finished, with all its metrics."
        )
    ]
    if name == "retrieval":
        checks.append(
            dg.AssetCheckSpec(
                GATE_CHECK,
                asset=key,
                description="The gate mode's retrieval metric (evals.gate_metric, nDCG@10 by default) is not more "
                "than evals.regression_margin below the baseline run's in MLflow (`ragyard eval baseline set`).",
            )
        )

    @dg.asset(
        key=key,
        deps=[INDEX_ASSET],
        group_name=GROUP,
        kinds={"python", "mlflow"},
        check_specs=checks,
        description=f"The {name} eval against the current index and settings; every run an MLflow run.",
    )
    def _eval_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        result = run_eval(name, settings, quick=settings.evals.asset_quick)
        context.log.info(f"{name} eval: MLflow runs {result.run_ids} in experiment {result.experiment!r}")
        client = mlflow_client(settings.mlflow.url)
        check_results = [_logged_check(result, client)]
        if name == "retrieval":
            check_results.append(_gate_check(result, settings, client))
        return dg.MaterializeResult(metadata=_metadata(result, settings, client), check_results=check_results)

    return _eval_asset


def eval_run_key(settings: Settings) -> str:
    """Equal for two states that would measure the same thing: index version and the settings used."""
    state = {**common_params(settings), "evals": settings.evals.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:24]


def make_eval_sensor(settings: Settings, job) -> dg.SensorDefinition:
    @dg.asset_sensor(
        asset_key=INDEX_ASSET,
        job=job,
        name="evals_after_index",
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.evals.run_after_index
        else dg.DefaultSensorStatus.STOPPED,
        description="Runs the evals after the vector index is materialized, once per index version and settings.",
    )
    def evals_after_index(context: dg.SensorEvaluationContext, asset_event):
        # Dagster launches a run key once: an ingest run that changed nothing re-runs no eval.
        return dg.RunRequest(run_key=eval_run_key(settings))

    return evals_after_index


def eval_definitions(settings: Settings) -> dg.Definitions:
    """The eval assets present here (of `evals.asset_evals`), their job and the sensor."""
    present = set(available_evals())
    assets = [make_eval_asset(name, settings) for name in settings.evals.asset_evals if name in present]
    if not assets:
        return dg.Definitions()
    job = dg.define_asset_job(
        "evals",
        selection=dg.AssetSelection.assets(*assets),
        description="Run the evals against the current index; results in MLflow and the assets' metadata.",
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions(assets=assets, jobs=[job], sensors=[make_eval_sensor(settings, job)])
