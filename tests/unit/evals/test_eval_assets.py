"""The evals' code location holds the eval asset, its job and sensor (run on a real index: tests/integration)."""

from evals.assets import GATE_CHECK, INDEX_ASSET, LOGGED_CHECK, eval_definitions
from pipelines.assets import vector_index
from ragyard.settings import EvalsSettings, Settings


def test_the_code_location_has_the_eval_asset_job_and_sensor():
    defs = eval_definitions(Settings())
    assert [a.key.to_user_string() for a in defs.assets] == ["retrieval_eval"]
    # downstream of the ingestion's index, which lives in the other code location
    assert defs.assets[0].asset_deps[defs.assets[0].key] == {INDEX_ASSET} and INDEX_ASSET == vector_index.key
    assert {c.name for c in defs.assets[0].check_specs} == {GATE_CHECK, LOGGED_CHECK}
    assert [s.name for s in defs.sensors] == ["evals_after_index"]
    assert not eval_definitions(Settings(evals=EvalsSettings(asset_evals=["answers-not-here"]))).assets
