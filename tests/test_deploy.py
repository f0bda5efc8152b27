"""deploy/: the kustomize base renders with ``kubectl kustomize`` and every object is valid
against the Kubernetes schemas (offline, ``kubernetes-validate``); the recipe's promises
(two replicas, no unavailable pod while rolling, probes, secrets referenced) hold."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from featureflag_server.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# The oldest Kubernetes release still commonly run, and a recent one.
VERSIONS = ["1.29.0", "1.34.0"]
SECRET_ENV = {"FEATUREFLAG_SECRET", "FEATUREFLAG_API_TOKENS", "FEATUREFLAG_DATABASE_URL"}


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(DEPLOY / "base")


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def containers(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield from o["spec"]["template"]["spec"]["containers"]


def test_the_base_has_every_object_the_recipe_promises(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "Deployment", "Ingress", "Job", "PodDisruptionBudget", "Service", "ServiceAccount",
    ]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]], version: str
) -> None:
    for o in objects:
        # strict: an unknown or misspelt field is an error, not silently dropped.
        kubernetes_validate.validate(o, version, strict=True)


def test_an_invalid_object_is_caught(objects: list[dict[str, Any]]) -> None:
    # The control: the validation above can fail.
    broken = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
    broken["spec"]["strategy"]["rollingUpdate"]["maxUnavailabel"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_two_replicas_roll_with_no_unavailable_pod(objects: list[dict[str, Any]]) -> None:
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1


def test_readiness_and_liveness_ask_healthz_on_the_served_port(
    objects: list[dict[str, Any]],
) -> None:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert get["port"] in ports
    assert f"--port={ports[get['port']]}" in container["args"]


def test_the_containers_arguments_are_ones_the_service_accepts(
    objects: list[dict[str, Any]],
) -> None:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {
        "FEATUREFLAG_SECRET": "k" * 40,
        "FEATUREFLAG_API_TOKENS": "ci:ci-token-0123456789",
        "FEATUREFLAG_DATABASE_URL": "postgresql://ff@db:5432/ff",
    }
    settings = load_settings(container["args"], env)
    assert settings.host == "0.0.0.0" and settings.db == env["FEATUREFLAG_DATABASE_URL"]
    job = one(objects, "Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    assert job["restartPolicy"] == "Never"


def test_selectors_pick_the_deployments_pods(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one(objects, "Service")["spec"]["selector"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    job_labels = one(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    for selector in selectors:  # the migrate Job's pod is not one of the service's
        assert not selector.items() <= job_labels.items()
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] < deployment["spec"]["replicas"]


def test_the_ingress_serves_the_service_and_every_fork_host(objects: list[dict[str, Any]]) -> None:
    ingress = one(objects, "Ingress")["spec"]
    service = one(objects, "Service")
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    domain = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--fork-domain="))
    hosts = [rule["host"] for rule in ingress["rules"]]
    assert f"*.{domain}" in hosts
    assert any(not h.startswith("*.") and not h.endswith(f".{domain}") for h in hosts)
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in ingress["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in port_names
    assert {h for tls in ingress["tls"] for h in tls["hosts"]} == set(hosts)


def test_secrets_are_referenced_never_inlined(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    seen = set()
    for container in containers(objects):
        for var in container.get("env", []):
            if var["name"] in SECRET_ENV:
                assert "value" not in var, var["name"]
                assert var["valueFrom"]["secretKeyRef"]["name"] == "featureflag-server"
                seen.add(var["name"])
    assert seen == SECRET_ENV


def test_containers_run_unprivileged_on_one_image(objects: list[dict[str, Any]]) -> None:
    images = set()
    for container in containers(objects):
        images.add(container["image"])
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
    assert len(images) == 1


def test_the_argo_cd_application_points_at_a_path_that_renders() -> None:
    application = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text())
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    assert application["kind"] == "Application"
    source = application["spec"]["source"]
    assert render(ROOT / source["path"])  # the base itself
    assert application["spec"]["destination"]["namespace"]


def test_the_containerfile_copies_what_exists_and_runs_the_service() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["featureflag-server"]' in text
    assert "USER 10001" in text
