"""The retrieval regression gate and its baseline, both kept in MLflow.

The baseline is the retrieval run tagged `ragyard.baseline=true` for the same eval set: the same
dataset, dataset size (so the quick subset has its own) and search mode. One run per eval set
carries the tag: `set_baseline` moves it (CLI: `ragyard eval baseline set`). An explicit tag,
rather than "the best run" or "the latest run", because a baseline is a decision: the best run
may come from a setting that was rolled back, and the latest may be the regression itself. With
no baseline yet and `evals.adopt_first_baseline` on, the first gated run becomes the baseline.

The gate fails when the run's metric is more than `evals.regression_margin` (absolute) below the
baseline's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragyard.settings import Settings

BASELINE_TAG = "ragyard.baseline"
EVAL_SET_PARAMS = ("dataset", "dataset_size", "mode")


@dataclass
class GateResult:
    passed: bool
    metric: str
    current: float
    baseline: float | None
    margin: float
    run_id: str
    baseline_run_id: str | None
    message: str

    @property
    def delta(self) -> float | None:
        return None if self.baseline is None else self.current - self.baseline


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def eval_set_filter(run) -> str:
    """An MLflow search filter matching the runs of `run`'s eval set."""
    return " and ".join(f"params.{name} = {_quote(run.data.params[name])}" for name in EVAL_SET_PARAMS)


def find_baseline(client, run):
    """The baseline run of `run`'s eval set (in its experiment), or None."""
    found = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{BASELINE_TAG}` = 'true' and {eval_set_filter(run)}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def set_baseline(client, run_id: str) -> list[str]:
    """Make `run_id` the baseline of its eval set; returns the runs that lost the tag."""
    run = client.get_run(run_id)
    missing = [name for name in EVAL_SET_PARAMS if name not in run.data.params]
    if missing:
        raise ValueError(f"run {run_id} is not a retrieval eval run: it has no params {missing}")
    previous = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{BASELINE_TAG}` = 'true' and {eval_set_filter(run)}"
    )
    cleared = []
    for other in previous:
        if other.info.run_id != run_id:
            client.delete_tag(other.info.run_id, BASELINE_TAG)
            cleared.append(other.info.run_id)
    client.set_tag(run_id, BASELINE_TAG, "true")
    return cleared


def latest_run(client, experiment: str, mode: str, quick: bool):
    """The most recent finished retrieval run of `mode` (quick subset or full set), or None."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"tags.`ragyard.eval` = 'retrieval' and tags.`ragyard.quick` = '{str(quick).lower()}' "
            f"and params.mode = {_quote(mode)} and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def check_regression(client, run_id: str, settings: Settings) -> GateResult:
    """Compare the run's gate metric with its eval set's baseline."""
    e = settings.evals
    run = client.get_run(run_id)
    current = run.data.metrics[e.gate_metric]
    baseline_run = find_baseline(client, run)
    if baseline_run is None:
        if e.adopt_first_baseline:
            set_baseline(client, run_id)
            return GateResult(
                True,
                e.gate_metric,
                current,
                current,
                e.regression_margin,
                run_id,
                run_id,
                "no baseline recorded for this eval set: this run became the baseline",
            )
        return GateResult(
            True,
            e.gate_metric,
            current,
            None,
            e.regression_margin,
            run_id,
            None,
            "no baseline recorded for this eval set; set one with `ragyard eval baseline set`",
        )
    baseline = baseline_run.data.metrics[e.gate_metric]
    passed = current >= baseline - e.regression_margin
    verdict = "within" if passed else "more than"
    message = (
        f"{e.gate_metric} {current:.4f} vs baseline {baseline:.4f} (run {baseline_run.info.run_id}): "
        f"{verdict} the margin {e.regression_margin}"
    )
    return GateResult(
        passed, e.gate_metric, current, baseline, e.regression_margin, run_id, baseline_run.info.run_id, message
    )


def gated_run_id(result, settings: Settings) -> str:
    """The run of a retrieval HarnessResult that the gate checks: the one in `evals.gate_mode`."""
    for run, run_id in zip(result.report.runs, result.run_ids, strict=True):
        if run.params.get("mode") == settings.evals.gate_mode:
            return run_id
    raise ValueError(f"the retrieval eval did not run mode {settings.evals.gate_mode!r}, the gate's mode")
