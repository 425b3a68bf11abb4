"""deploy/aks: every overlay rendered by kustomize (kubectl's built-in), every rendered object
validated in strict mode against the Kubernetes JSON schemas kubernetes-validate ships (offline),
for the oldest and the newest Kubernetes version it knows from AKS_OLDEST on, then the project's
rules. Nothing here was applied to a cluster (no Kubernetes on these machines)."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shipper.config import Settings, env_name
from tests.support.deploy_tools import REPO, kustomize_command, run, stack_version, venv_tool

AKS = REPO / "deploy" / "aks"
OVERLAYS = ["base", "overlays/eck", "overlays/existing-cluster"]
# The oldest Kubernetes minor AKS supported when this was written, and the newest schemas shipped.
AKS_OLDEST = "1.33.0"
VERSIONS = [AKS_OLDEST, kubernetes_validate.latest_version()]
ECK_KINDS = {"Elasticsearch", "Kibana"}
# Checked copies: what the manifests mount is what the Filebeat and Logstash tests check.
COPIES = {
    "deploy/aks/base/filebeat/filebeat.yml": "filebeat/filebeat.kubernetes.yml",
    "deploy/aks/base/logstash/config/logstash.yml": "logstash/config/logstash.yml",
    "deploy/aks/base/logstash/config/pipelines.yml": "logstash/pipelines.yml",
    "deploy/aks/base/logstash/patterns/mlops_scoring": "logstash/patterns/mlops_scoring",
    **{
        f"deploy/aks/base/logstash/pipeline/{p.name}": f"logstash/pipeline/scoring/{p.name}"
        for p in sorted((REPO / "logstash" / "pipeline" / "scoring").glob("*.conf"))
    },
}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    proc = run([*kustomize_command(), str(AKS / overlay)])
    assert proc.returncode == 0, f"kustomize refused deploy/aks/{overlay}:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def _by_kind(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == kind}


def _pod_specs(overlay: str) -> dict[str, dict[str, Any]]:
    specs = {}
    for doc in rendered(overlay):
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]
    return specs


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", VERSIONS)
def test_strict_schema_validation(overlay: str, version: str) -> None:
    checked = 0
    for doc in rendered(overlay):
        if doc["kind"] in ECK_KINDS:
            continue  # custom resources: test_eck_resources
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}")
        checked += 1
    assert checked >= 20


def test_strict_validation_is_real() -> None:
    """An unknown field and a wrong type are both refused by the same validator."""
    deployment = dict(_by_kind("base", "Deployment")["shipper-webhook"])
    typo = yaml.safe_load(yaml.safe_dump(deployment).replace("readinessProbe:", "readynessProbe:"))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, AKS_OLDEST, strict=True)
    wrong = yaml.safe_load(yaml.safe_dump(deployment).replace("replicas: 2", "replicas: two"))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, AKS_OLDEST, strict=True)


@pytest.mark.parametrize("copy, source", sorted(COPIES.items()))
def test_mounted_files_are_the_checked_ones(copy: str, source: str) -> None:
    assert (REPO / copy).read_bytes() == (REPO / source).read_bytes(), (
        f"{copy} differs from {source}; refresh it: cp {source} {copy}"
    )


def test_every_pipeline_file_is_mounted() -> None:
    generated = _by_kind("base", "ConfigMap")
    pipeline = next(cm for name, cm in generated.items() if name.startswith("logstash-pipeline-"))
    sources = sorted(p.name for p in (REPO / "logstash" / "pipeline" / "scoring").glob("*.conf"))
    assert sorted(pipeline["data"]) == sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_elastic_versions_follow_env(overlay: str) -> None:
    version = stack_version()
    seen = 0
    for name, template in _pod_specs(overlay).items():
        for container in template["spec"]["containers"]:
            if container["image"].startswith("docker.elastic.co/"):
                assert container["image"].endswith(":" + version), (name, container["image"])
                seen += 1
    for doc in rendered(overlay):
        if doc["kind"] in ECK_KINDS:
            assert doc["spec"]["version"] == version, doc["metadata"]["name"]
    assert seen == 2  # Filebeat and Logstash


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_have_resources_security_and_probes(overlay: str) -> None:
    for name, template in _pod_specs(overlay).items():
        pod = template["spec"]
        reason = template["metadata"].get("annotations", {}).get("mlops.shipper/probes", "")
        for container in pod["containers"]:
            where = f"{overlay}: {name}/{container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            if name == "DaemonSet/filebeat":
                assert security["runAsUser"] == 0  # reads the node's logs; read-only mounts
                assert all(m.get("readOnly") for m in container["volumeMounts"] if "log" in m["name"])
            else:
                assert pod["securityContext"]["runAsNonRoot"] is True, where
                assert pod["securityContext"]["runAsUser"] >= 1000, where
            if reason.startswith("none:"):
                assert "livenessProbe" not in container, where
            else:
                assert "livenessProbe" in container and "readinessProbe" in container, where


def test_webhook_is_replicated_reachable_and_probed() -> None:
    webhook = _by_kind("base", "Deployment")["shipper-webhook"]
    assert webhook["spec"]["replicas"] >= 2
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    labels = webhook["spec"]["template"]["metadata"]["labels"]
    pdb = _by_kind("base", "PodDisruptionBudget")["shipper-webhook"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _by_kind("base", "Service")["shipper-webhook"]
    assert service["spec"]["selector"].items() <= labels.items()
    ingress = _by_kind("base", "Ingress")["shipper-webhook"]
    assert ingress["spec"]["tls"], "Event Grid delivers only over HTTPS"
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [("/events", "shipper-webhook")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_poller_runs_one_shard_per_replica(overlay: str) -> None:
    """Pod i of n runs SHIPPER_SHARD=i/n: the index from the pod-index label, n equal to replicas."""
    assert "shipper-poller" not in _by_kind(overlay, "Deployment")
    poller = _by_kind(overlay, "StatefulSet")["shipper-poller"]
    spec = poller["spec"]
    assert spec["replicas"] == 2 and spec["podManagementPolicy"] == "Parallel"
    service = _by_kind(overlay, "Service")[spec["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"] == ["run"]
    env = [e["name"] for e in container["env"]]
    by_name = {e["name"]: e for e in container["env"]}
    assert env.index("POD_INDEX") < env.index("SHIPPER_SHARD"), "$(POD_INDEX) expands only if defined before"
    field = by_name["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert by_name["SHIPPER_SHARD"]["value"] == f"$(POD_INDEX)/{spec['replicas']}"


def test_setup_job_args() -> None:
    job = _by_kind("base", "Job")["shipper-setup"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["setup", "--kibana"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values(overlay: str) -> None:
    assert not _by_kind(overlay, "Secret"), "secrets are created by the operator, never shipped"
    secretish = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN", re.I)
    for name, template in _pod_specs(overlay).items():
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if secretish.search(env["name"]):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], (name, env["name"])
    for name, configmap in _by_kind(overlay, "ConfigMap").items():
        for key in configmap.get("data", {}):
            assert not secretish.search(key), (name, key)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipper_settings_are_known(overlay: str) -> None:
    known = {env_name(f) for f in Settings.model_fields}
    config = next(cm for n, cm in _by_kind(overlay, "ConfigMap").items() if n.startswith("shipper-config-"))
    names = set(config["data"])
    for template in _pod_specs(overlay).values():
        for container in template["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    unknown = {n for n in names if n.startswith("SHIPPER_")} - known
    assert not unknown, f"not shipper settings (shipper/config.py): {sorted(unknown)}"
    assert config["data"]["SHIPPER_ELASTICSEARCH_URL"].startswith("https://")


def test_eck_overlay_points_the_shipper_at_eck() -> None:
    config = next(
        cm for n, cm in _by_kind("overlays/eck", "ConfigMap").items() if n.startswith("shipper-config")
    )
    es = _by_kind("overlays/eck", "Elasticsearch")
    kb = _by_kind("overlays/eck", "Kibana")
    assert set(es) == {"mlops"} and kb["mlops"]["spec"]["elasticsearchRef"]["name"] == "mlops"
    assert config["data"]["SHIPPER_ELASTICSEARCH_URL"] == "https://mlops-es-http.mlops.svc:9200"
    assert config["data"]["SHIPPER_KIBANA_URL"] == "https://mlops-kb-http.mlops.svc:5601"
    secrets = {
        v["secret"]["secretName"]
        for t in _pod_specs("overlays/eck").values()
        for v in t["spec"].get("volumes", [])
        if "secret" in v
    }
    assert secrets == {"mlops-es-http-certs-public", "mlops-kb-http-certs-public"}
    setup_env = {e["name"]: e for e in _by_kind("overlays/eck", "Job")["shipper-setup"]["spec"]["template"]
                 ["spec"]["containers"][0]["env"]}  # fmt: skip
    assert "SHIPPER_ELASTICSEARCH_API_KEY" not in setup_env
    assert (
        setup_env["SHIPPER_ELASTICSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "mlops-es-elastic-user"
    )


def test_network_policies_select_existing_pods() -> None:
    pods = [t["metadata"]["labels"] for t in _pod_specs("base").values()]
    for name, policy in _by_kind("base", "NetworkPolicy").items():
        selector = policy["spec"]["podSelector"]
        matched = [
            labels
            for labels in pods
            if selector.get("matchLabels", {}).items() <= labels.items()
            and all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))
        ]
        assert matched, f"NetworkPolicy {name} selects no pod"


def test_filebeat_can_read_pod_metadata() -> None:
    role = _by_kind("base", "ClusterRole")["mlops-filebeat"]
    core = next(r for r in role["rules"] if r["apiGroups"] == [""])
    assert {"pods", "namespaces", "nodes"} <= set(core["resources"]) and set(core["verbs"]) == {
        "get",
        "list",
        "watch",
    }
    binding = _by_kind("base", "ClusterRoleBinding")["mlops-filebeat"]
    daemonset = _by_kind("base", "DaemonSet")["filebeat"]
    assert binding["subjects"][0]["name"] == daemonset["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"][0]["namespace"] == daemonset["metadata"]["namespace"]


def _eckvalidate(text: str) -> tuple[int, str]:
    binary = venv_tool("eckvalidate")
    proc = subprocess.run([binary], input=text, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_eck_resources_decode_strictly_into_eck_types() -> None:
    """tools/eckvalidate decodes ECK resources into ECK 3.5's own Go API types, unknown fields refused."""
    proc = run([*kustomize_command(), str(AKS / "overlays/eck")])
    code, output = _eckvalidate(proc.stdout)
    assert code == 0, output
    assert "2 ECK resources checked, 0 invalid" in output


@pytest.mark.parametrize(
    "old, new",
    [
        ("nodeSets:", "nodeSet:"),  # unknown field
        ("count: 3", "count: three"),  # wrong type
        # a misspelt container field inside the pod template (a typed PodTemplateSpec)
        (
            "- name: elasticsearch\n              resources:",
            "- name: elasticsearch\n              resourcez:",
        ),
    ],
)
def test_eck_validator_refuses_mistakes(old: str, new: str) -> None:
    text = (AKS / "overlays/eck/elasticsearch.yaml").read_text(encoding="utf-8")
    assert old in text
    code, output = _eckvalidate(text.replace(old, new, 1))
    assert code == 1 and "1 invalid" in output, output
