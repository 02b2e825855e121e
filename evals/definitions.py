"""The evals' Dagster code location `ragyard-evals`, beside the ingestion's: in `dagster dev -w
workspace.yaml` on one machine, a second user-code deployment of the same image on Kubernetes."""

from evals.assets import eval_definitions
from ragyard.settings import Settings

defs = eval_definitions(Settings())
