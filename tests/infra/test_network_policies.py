"""Who may reach whom in the cluster: the NetworkPolicies of infra/k8s, evaluated as Kubernetes does for
ingress (a pod that some policy selects admits only what one of them allows; peers by pod labels,
any namespace when a namespaceSelector is given) over the rendered overlays."""

from __future__ import annotations

import pytest
import yaml

from tests.infra.test_manifests import BENTOS, INFRA, default_port, find, rendered

PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
INGESTION = {"ragyard.io/role": "ingestion"}
EVALS = {"ragyard.io/role": "evals"}
ANY_POD = {"app.kubernetes.io/name": "debug-shell"}


def pod(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are evaluated here: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_admits(peer: dict, labels: dict[str, str], same_namespace: bool) -> bool:
    if "namespaceSelector" not in peer and not same_namespace:
        return False
    if "namespaceSelector" in peer and not selects(peer["namespaceSelector"], {}):
        return False  # a selector of particular namespaces: none of our test's sources carries their labels
    return selects(peer.get("podSelector", {}), labels)


def reachable(docs, target: str, port: int, source: dict[str, str], same_namespace: bool = True) -> bool:
    """Whether a pod labelled `source` may open a TCP connection to the pods of Deployment `target`."""
    target_labels = find(docs, "Deployment", target)["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and selects(d["spec"]["podSelector"], target_labels)]
    if not policies:
        return True  # no policy selects it: Kubernetes admits everything
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            port_ok = "ports" not in rule or any(p["port"] == port and p["protocol"] == "TCP" for p in rule["ports"])
            peers = rule.get("from")
            peer_ok = peers is None or any(peer_admits(p, source, same_namespace) for p in peers)
            if port_ok and peer_ok:
                return True
    return False


# target -> the pods that must reach it (besides Prometheus); everything else must not.
CALLERS = {
    "embedder": [pod("router"), pod("retriever"), pod("memory"), INGESTION, EVALS],
    "retriever": [pod("router"), pod("tools"), EVALS],
    "llm": [pod("router"), pod("memory"), EVALS],
    "safety": [pod("router"), pod("memory"), pod("review")],
    "memory": [pod("router")],
    "mlflow": [pod("router"), pod("review"), INGESTION, EVALS],
}
EVERYONE = [pod(name) for name in BENTOS + ["mlflow"]] + [INGESTION, EVALS, ANY_POD]


def port_of(target: str) -> int:
    return 5000 if target == "mlflow" else default_port(target)


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/prod"])
def test_internal_services_admit_only_their_callers_and_prometheus(overlay):
    docs = rendered(overlay)
    for target, callers in CALLERS.items():
        port = port_of(target)
        for source in EVERYONE:
            wanted = source in callers
            assert reachable(docs, target, port, source) == wanted, f"{source} -> {target}: expected {wanted}"
        assert reachable(docs, target, port, PROMETHEUS, same_namespace=False), f"Prometheus cannot scrape {target}"
        assert not reachable(docs, target, port, pod("router"), same_namespace=False), "a router elsewhere"
        assert not reachable(docs, target, port + 1, pod("router")), "only the service's port is open"


@pytest.mark.parametrize("overlay", ["base", "overlays/prod"])
def test_the_front_doors_admit_anyone_on_their_port_only(overlay):
    docs = rendered(overlay)
    for target in ["router", "tools", "review"]:
        assert reachable(docs, target, default_port(target), ANY_POD, same_namespace=False)
        assert not reachable(docs, target, default_port(target) + 100, ANY_POD)


def test_every_workload_we_deploy_is_behind_a_policy():
    docs = rendered("overlays/prod")
    deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    assert sorted(deployments) == sorted(BENTOS + ["mlflow"])
    for name in deployments:
        labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert any(d["kind"] == "NetworkPolicy" and selects(d["spec"]["podSelector"], labels) for d in docs), (
            f"{name} has no NetworkPolicy"
        )


def test_the_dagster_pods_carry_the_roles_the_policies_admit():
    values = yaml.safe_load((INFRA / "helm" / "dagster-values.yaml").read_text())
    roles = {d["dagsterApiGrpcArgs"][-1]: d["labels"] for d in values["dagster-user-deployments"]["deployments"]}
    assert roles == {"pipelines.definitions": INGESTION, "evals.definitions": EVALS}


def test_the_evaluator_knows_an_open_pod_from_a_closed_one():
    docs = rendered("base")
    closed = [d for d in docs if d["kind"] != "NetworkPolicy"]
    assert reachable(closed, "llm", default_port("llm"), ANY_POD)  # no policies: open
    assert not reachable(docs, "llm", default_port("llm"), ANY_POD)
