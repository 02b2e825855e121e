"""The reviewed-answers dataset in MLflow: one run per decision in the experiment `review.experiment`,
holding a one-row table artifact `reviewed_answers.json`. The evals read all rows at once with
``mlflow.load_table("reviewed_answers.json", experiment_ids=[...])``."""

from __future__ import annotations

from collections.abc import Mapping

from ragyard.tracking import mlflow_client

TABLE = "reviewed_answers.json"


class ReviewedAnswers:
    def __init__(self, tracking_uri: str, experiment: str):
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    def record(self, row: Mapping[str, str | float | None]) -> str:
        """Log `row` (review_id, decision, question, answer, ...) as a run of its own; the run's id.
        Blocking: call it in a thread."""
        client = mlflow_client(self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        run = client.create_run(experiment_id, run_name=f"review-{row['review_id']}", tags={"ragyard.kind": "review"})
        client.log_param(run.info.run_id, "decision", row["decision"])
        client.log_table(run.info.run_id, {key: [value] for key, value in row.items()}, TABLE)
        client.set_terminated(run.info.run_id)
        return run.info.run_id
