"""deploy/k8s: every manifest valid against the Kubernetes schemas, and consistent with the code.

No cluster runs in CI; kubernetes-validate checks each document against the OpenAPI
schemas of the Kubernetes release below (strict: unknown fields are errors), and the
tests check what a schema cannot: every service runs, probes hit the health endpoints,
settings are ones the code reads, and Prometheus's DNS names exist as headless Services.
"""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from helpdesk import cli
from support import known_setting

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.30"


def _documents() -> list[tuple[str, dict]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                docs.append((name, doc))
    return docs


DOCS = _documents()


def _of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _f, doc in DOCS if doc["kind"] == kind}


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    assert {i["name"] for i in kustomization["images"]} == {"helpdesk"}


@pytest.mark.parametrize("source,doc", DOCS, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS])
def test_manifest_is_valid_kubernetes(source, doc):
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises, naming the field, when invalid


def test_validation_catches_a_wrong_field():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES, strict=True)


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_service_runs_as_a_deployment_with_probes_and_resources(capsys):
    deployments = _of_kind("Deployment")
    run = {}
    for name, deployment in deployments.items():
        container = _container(deployment)
        assert container["image"] == "helpdesk", name
        args = container["args"]
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*args, "--help"])
        capsys.readouterr()
        assert exit_info.value.code == 0, f"{name}: `helpdesk {' '.join(args)}` is not a command"
        assert args[0] == "run"
        run.update({service: name for service in args[1:]})
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        assert ports["metrics"] == 9100
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items(), name
    assert set(cli.SERVICES) <= set(run), f"services without a Deployment: {set(cli.SERVICES) - set(run)}"


def test_settings_are_ones_the_code_reads():
    names = set()
    for kind in ("ConfigMap", "Secret"):
        for doc in _of_kind(kind).values():
            names.update(doc.get("data") or {})
            names.update(doc.get("stringData") or {})
    unknown = sorted(n for n in names if not known_setting(n))
    assert not unknown, unknown
    for deployment in _of_kind("Deployment").values():
        refs = _container(deployment)["envFrom"]
        assert {r.get("configMapRef", r.get("secretRef"))["name"] for r in refs} == {"helpdesk-config",
                                                                                    "helpdesk-secrets"}


def test_prometheus_finds_every_replica_through_a_headless_service():
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "helpdesk")
    names = set(job["dns_sd_configs"][0]["names"])
    services = _of_kind("Service")
    for name in names:
        assert name in services, f"no Service {name} for Prometheus to resolve"
        assert services[name]["spec"].get("clusterIP") == "None", f"{name} is not headless"
        assert any(p["port"] == 9100 for p in services[name]["spec"]["ports"]), name


def test_autoscalers_and_budgets_point_at_deployments():
    deployments = _of_kind("Deployment")
    for hpa in _of_kind("HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    for pdb in _of_kind("PodDisruptionBudget").values():
        labels = pdb["spec"]["selector"]["matchLabels"]
        assert any(labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()), pdb["metadata"]["name"]
    claims = _of_kind("PersistentVolumeClaim")
    for name, deployment in deployments.items():
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
