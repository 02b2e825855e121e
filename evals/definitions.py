"""The evals' Dagster code location, beside the ingestion's: `dagster dev -m pipelines.definitions
-m evals.definitions` on one machine; a second user-code deployment of the same image on Kubernetes."""

from evals.assets import eval_definitions
from ragyard.settings import Settings

defs = eval_definitions(Settings())
