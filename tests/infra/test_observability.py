"""What operators see: the Grafana dashboards (infra/observability) read metrics the code declares, with
labels those metrics have; Prometheus and Grafana are provisioned in compose and on Kubernetes; and the
broker is part of both deployments, its URL built from its credentials.

BentoML's series are checked against a real bento's /metrics (tests/integration/bentos/
test_router_bento.py) and RabbitMQ's against a real broker's (tests/integration/ragyard/test_broker.py).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.infra.test_manifests import (
    BENTOS,
    INFRA,
    bento_container,
    compose,
    default_port,
    find,
    helm_values,
    rendered,
)
from tests.support.dashboards import Query, dashboard_files, load, queries
from tests.support.metrics import declared_metrics, exposed_series

OBSERVABILITY = INFRA / "observability"
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"job", "instance"}


def unknown_reads(query: Query, series: dict[str, frozenset[str]]) -> list[str]:
    """What a query reads of ragyard's metrics that no declared metric exposes: series, then labels."""
    problems = [
        f"no metric exposes {name}" for name in query.series() if name.startswith("ragyard_") and name not in series
    ]
    for name, label in query.selector_labels():
        if name in series and label not in series[name]:
            problems.append(f"{name} has no label {label!r}")
    ours = [series[name] for name in query.series() if name in series]
    if ours:
        allowed = set().union(*ours) | TARGET_LABELS
        problems += [
            f"grouped by {label!r}, a label of none of its metrics" for label in query.grouping_labels() - allowed
        ]
    return problems


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_reads_metrics_the_code_declares_with_their_labels(path):
    series = exposed_series(declared_metrics())
    all_queries = queries(path)
    assert all_queries
    for query in all_queries:
        assert query.series(), f"{query.panel}: reads no ragyard, BentoML or RabbitMQ series: {query.expr}"
        assert not unknown_reads(query, series), (query.panel, query.expr, unknown_reads(query, series))
    read = {name for query in all_queries for name in query.series()}
    # What the issue names: request rate, step latency, tokens, cost, cache, broker backlog and dead letters.
    for wanted in [
        "ragyard_router_requests_total",
        "ragyard_router_step_seconds_bucket",
        "ragyard_router_tokens_total",
        "ragyard_router_cost_total",
        "ragyard_router_cache_lookups_total",
        "ragyard_outbox_backlog",
        "ragyard_events_consumed_total",
    ]:
        assert wanted in read, f"no panel shows {wanted}"


def test_the_metric_check_finds_a_misspelt_metric_a_wrong_label_and_a_wrong_grouping():
    series = exposed_series(declared_metrics())
    good = Query("d", "p", 'sum by (model) (rate(ragyard_router_tokens_total{direction="out"}[5m]))')
    assert unknown_reads(good, series) == []
    assert unknown_reads(Query("d", "p", "rate(ragyard_router_token_total[5m])"), series) == [
        "no metric exposes ragyard_router_token_total"
    ]
    assert unknown_reads(Query("d", "p", 'rate(ragyard_router_tokens_total{key="k"}[5m])'), series) == [
        "ragyard_router_tokens_total has no label 'key'"
    ]
    assert unknown_reads(Query("d", "p", "sum by (tenant) (rate(ragyard_router_cost_total[5m]))"), series) == [
        "grouped by 'tenant', a label of none of its metrics"
    ]
    # A counter is read with _total, a histogram's quantiles from _bucket with `le`.
    assert "ragyard_router_requests_total" in series and "ragyard_router_requests" not in series
    assert "le" in series["ragyard_router_step_seconds_bucket"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_panels_are_well_formed_on_the_provisioned_data_source(path):
    dashboard = load(path)
    (source,) = yaml.safe_load((OBSERVABILITY / "grafana" / "datasources.yaml").read_text())["datasources"]
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        box = panel["gridPos"]
        assert 0 <= box["x"] and box["x"] + box["w"] <= 24, f"{panel['title']} is wider than the grid"
        covered = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


def test_compose_prometheus_scrapes_every_bento_on_its_settings_port_and_the_broker():
    services = compose()["services"]
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert sorted(targets["bentos"]) == sorted(f"{bento}:{default_port(bento)}" for bento in BENTOS)
    for target in targets["bentos"] + targets["rabbitmq"]:
        assert target.split(":")[0] in services
    assert targets["rabbitmq"] == ["rabbitmq:15692"]  # the Prometheus plugin's port
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["prometheus"]["volumes"] if m.startswith(".")}
    assert (INFRA / "compose" / mounts["/etc/prometheus/prometheus.yml"]).resolve() == OBSERVABILITY / "prometheus.yml"


def test_compose_grafana_is_provisioned_with_the_data_source_and_the_dashboards():
    grafana = compose()["services"]["grafana"]
    mounts = {
        m.split(":")[1]: (INFRA / "compose" / m.split(":")[0]).resolve()
        for m in grafana["volumes"]
        if m.startswith(".")
    }
    for target, source in mounts.items():
        assert source.exists(), f"{source} (mounted at {target}) does not exist"
    (provider,) = yaml.safe_load((OBSERVABILITY / "grafana" / "dashboards.yaml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == OBSERVABILITY / "dashboards"
    assert any(t.startswith("/etc/grafana/provisioning/datasources/") for t in mounts)
    assert any(t.startswith("/etc/grafana/provisioning/dashboards/") for t in mounts)
    assert "${GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


@pytest.mark.parametrize("overlay", ["base", "overlays/prod"])
def test_the_cluster_ships_each_dashboard_as_a_configmap_for_grafanas_sidecar(overlay):
    sidecar = helm_values("kube-prometheus-stack")["grafana"]["sidecar"]["dashboards"]
    shipped = {
        doc["metadata"]["name"]: doc
        for doc in rendered(overlay)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get(sidecar["label"]) == sidecar["labelValue"]
    }
    contents = {name: json.loads(text) for doc in shipped.values() for name, text in doc["data"].items()}
    assert contents == {path.name: load(path) for path in dashboard_files()}
    assert sidecar["enabled"] is True and sidecar["searchNamespace"] == "ALL"


def test_the_broker_is_a_rabbitmq_cluster_whose_secret_gives_the_router_its_url():
    for overlay, replicas in [("base", 1), ("overlays/prod", 3)]:
        docs = rendered(overlay)
        broker = find(docs, "RabbitmqCluster", "broker")
        assert broker["apiVersion"] == "rabbitmq.com/v1beta1" and broker["spec"]["replicas"] == replicas
        env = {e["name"]: e for e in bento_container(docs, "router")["env"]}
        for name, key in [("BROKER_USERNAME", "username"), ("BROKER_PASSWORD", "password")]:
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "broker-default-user", "key": key}
        # $(VAR) is expanded by the kubelet from variables defined earlier in the same list.
        names = list(env)
        assert names.index("RAGYARD_BROKER__URL") > names.index("BROKER_PASSWORD")
        assert env["RAGYARD_BROKER__URL"]["value"] == "amqp://$(BROKER_USERNAME):$(BROKER_PASSWORD)@broker:5672/"
        settings = find(docs, "ConfigMap", "ragyard-settings")["data"]
        assert settings["RAGYARD_BROKER__RUN_LOCAL"] == "false"
    ingestion = helm_values("dagster")["dagster-user-deployments"]["deployments"][0]
    assert ingestion["dagsterApiGrpcArgs"][-1] == "pipelines.definitions"
    assert {"BROKER_USERNAME", "BROKER_PASSWORD", "RAGYARD_BROKER__URL"} <= {e["name"] for e in ingestion["env"]}


def test_compose_runs_the_broker_for_the_router_and_the_ingestion():
    services = compose()["services"]
    for name in ["router", "dagster-code"]:
        service = services[name]
        assert service["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
        url = service["environment"]["RAGYARD_BROKER__URL"]
        assert url.startswith("amqp://ragyard:${RABBITMQ_PASSWORD") and url.endswith("@rabbitmq:5672/")
        assert service["environment"]["RAGYARD_BROKER__RUN_LOCAL"] == "false"
