"""The manifests in examples/kubernetes/: valid against the Kubernetes API schemas, and in agreement
with the geventserve flags of the Deployment's container (paths, ports, timings).

The schemas are the ones kubernetes-validate ships, read from the installed package (no network).
The agreement checks are also run on broken copies of the manifests, one fault each, so that each
check is shown to catch what it is there for. The container's command line is also given to
geventserve --check-config, skipped while geventserve lacks the flags of issue 12 it uses.
"""

from __future__ import annotations

import copy
import os
import sys
from typing import Any, Callable, Dict, List, Tuple

import kubernetes_validate
import pytest
import yaml

from helpers import run_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES = os.path.join(ROOT, "examples", "kubernetes")
# The oldest Kubernetes the manifests are written for: PodDisruptionBudget's
# unhealthyPodEvictionPolicy is GA from 1.31.
KUBERNETES_VERSION = "1.31"
# What terminationGracePeriodSeconds must leave beyond drain delay + graceful timeout: the
# supervisor's own exit after its workers, and the kubelet's reaction time.
GRACE_MARGIN = 5
# Short and long spellings of the flags the checks read (every one of them takes a value).
ALIASES = {"-b": "--bind", "-w": "--workers", "-t": "--timeout", "-c": "--config"}
# The flags of issue 12 that the manifests use before geventserve has them.
PENDING_FLAGS = ("--liveness-path", "--readiness-path", "--drain-delay")

Resources = Dict[Tuple[str, str], Dict[str, Any]]


def manifest_files() -> List[str]:
    return sorted(name for name in os.listdir(KUBERNETES)
                  if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml")


def load(name: str) -> List[Dict[str, Any]]:
    with open(os.path.join(KUBERNETES, name)) as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def load_resources() -> Resources:
    """Every object of the manifests, by (kind, name)."""
    resources: Resources = {}
    for name in manifest_files():
        for doc in load(name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in resources, f"{key} defined twice"
            resources[key] = doc
    return resources


def one(resources: Resources, kind: str) -> Dict[str, Any]:
    found = [doc for (k, _), doc in resources.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def server_container(deployment: Dict[str, Any]) -> Dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if os.path.basename(c.get("command", [""])[0]) == "geventserve"]
    assert len(found) == 1, "expected one container whose command is geventserve"
    return found[0]


def server_flags(args: List[str]) -> Tuple[Dict[str, List[str]], List[str]]:
    """The container's args as {long flag: [values]} and the positional arguments."""
    flags: Dict[str, List[str]] = {}
    positional: List[str] = []
    i = 0
    while i < len(args):
        item = args[i]
        if item.startswith("-") and item != "-":
            name, sep, value = item.partition("=")
            if not sep:
                assert i + 1 < len(args), f"{name} has no value"
                i += 1
                value = args[i]
            flags.setdefault(ALIASES.get(name, name), []).append(value)
        else:
            positional.append(item)
        i += 1
    return flags, positional


def flag(flags: Dict[str, List[str]], name: str) -> str:
    assert name in flags, f"the container's args have no {name}"
    return flags[name][-1]  # the last one wins, as on geventserve's command line


def container_port(container: Dict[str, Any], port: Any) -> int:
    """A port given by number or by the name of one of the container's ports, as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"the container has no port named {port!r}"
    return named[0]


def selects(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def check_agreement(resources: Resources) -> None:
    """Every way the manifests must agree with the server flags and with each other."""
    deployment = one(resources, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = server_container(deployment)
    flags, positional = server_flags(container["args"])
    assert len(positional) == 1, f"expected one app argument, got {positional}"

    # Ports: the one bound address, on all interfaces, is the container port everything uses.
    assert len(flags.get("--bind", [])) == 1, "expected exactly one --bind"
    host, _, port_text = flag(flags, "--bind").rpartition(":")
    assert host in ("0.0.0.0", "[::]"), (
        f"--bind {host}: the probes and the Service come to the pod's address")
    bind_port = int(port_text)
    assert [p["containerPort"] for p in container["ports"]] == [bind_port]

    # Probes: on the server's own paths and its port.
    liveness_path = flag(flags, "--liveness-path")
    readiness_path = flag(flags, "--readiness-path")
    assert liveness_path != readiness_path
    probes = {"livenessProbe": liveness_path, "readinessProbe": readiness_path}
    if "startupProbe" in container:
        probes["startupProbe"] = liveness_path
    for probe_name, path in probes.items():
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, f"{probe_name} path {probe['path']} != {path}"
        assert container_port(container, probe["port"]) == bind_port, f"{probe_name} port"

    # The stop: readiness seen as failed within the drain delay, and the kubelet's SIGKILL only
    # after the drain delay and the graceful timeout, with no preStop hook taking its share.
    drain_delay = float(flag(flags, "--drain-delay"))
    graceful_timeout = float(flag(flags, "--graceful-timeout"))
    assert drain_delay > 0
    readiness = container["readinessProbe"]
    detection = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
    assert detection < drain_delay, (
        f"readiness failure seen after {detection} s, not within the {drain_delay} s drain delay")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace >= drain_delay + graceful_timeout + GRACE_MARGIN, (
        f"terminationGracePeriodSeconds {grace} < drain delay {drain_delay} + graceful timeout "
        f"{graceful_timeout} + {GRACE_MARGIN}")
    assert "preStop" not in container.get("lifecycle", {}), "--drain-delay replaces preStop"

    # Requests and limits, and no root.
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container.get("resources", {}).get(part, {})), part
    run_as_non_root = container.get("securityContext", {}).get(
        "runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
    assert run_as_non_root is True

    # The Service, the budget and the autoscaler point at these pods and this port.
    service = one(resources, "Service")
    assert selects(service["spec"]["selector"], labels), "the Service selects other pods"
    for port in service["spec"]["ports"]:
        assert container_port(container, port["targetPort"]) == bind_port, "Service targetPort"
    budget = one(resources, "PodDisruptionBudget")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels), "the PDB selects other pods"
    autoscaler = one(resources, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert autoscaler["spec"]["minReplicas"] > budget["spec"]["maxUnavailable"], (
        "an eviction allowed by the budget would leave no pod serving")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("name", manifest_files())
def test_manifest_is_valid_against_the_api_schemas(name):
    docs = load(name)
    assert docs, f"{name} holds no object"
    for doc in docs:
        # strict: an unknown field (a misspelt periodSecond) is an error, as for kubectl
        validated = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert validated == KUBERNETES_VERSION  # not an older schema picked in its place


def test_schema_validation_rejects_a_broken_manifest():
    deployment = copy.deepcopy(one(load_resources(), "Deployment"))
    container = server_container(deployment)
    container["readinessProbe"]["periodSecond"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    del container["readinessProbe"]["periodSecond"]
    container["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    (kustomization,) = load("kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifest_files()


def test_manifests_agree_with_the_server_flags():
    check_agreement(load_resources())


def _container(resources: Resources) -> Dict[str, Any]:
    return server_container(one(resources, "Deployment"))


def _set_arg(name: str, value: str) -> Callable[[Resources], None]:
    def mutate(resources: Resources) -> None:
        args = _container(resources)["args"]
        index = next(i for i, item in enumerate(args) if item.partition("=")[0] == name)
        args[index] = f"{name}={value}"
    return mutate


def _set_probe(probe: str, key: str, value: Any) -> Callable[[Resources], None]:
    def mutate(resources: Resources) -> None:
        section = _container(resources)[probe]
        (section["httpGet"] if key in ("path", "port") else section)[key] = value
    return mutate


def _set_grace(value: int) -> Callable[[Resources], None]:
    def mutate(resources: Resources) -> None:
        one(resources, "Deployment")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"] = value
    return mutate


def _set_container_port(resources: Resources) -> None:
    _container(resources)["ports"][0]["containerPort"] = 9000


def _set_service_port(resources: Resources) -> None:
    one(resources, "Service")["spec"]["ports"][0]["targetPort"] = 9000


def _add_pre_stop(resources: Resources) -> None:
    _container(resources)["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "10"]}}}


def _drop_limits(resources: Resources) -> None:
    del _container(resources)["resources"]["limits"]


def _other_service_selector(resources: Resources) -> None:
    one(resources, "Service")["spec"]["selector"] = {"app.kubernetes.io/name": "other"}


# Each a fault the agreement check must catch, applied to a copy of the real manifests.
FAULTS: Dict[str, Callable[[Resources], None]] = {
    "liveness probe path": _set_probe("livenessProbe", "path", "/healthz"),
    "startup probe path": _set_probe("startupProbe", "path", "/healthz"),
    "readiness probe path": _set_probe("readinessProbe", "path", "/livez"),
    "--readiness-path": _set_arg("--readiness-path", "/ready"),
    "--liveness-path": _set_arg("--liveness-path", "/live"),
    "--bind port": _set_arg("--bind", "0.0.0.0:9000"),
    "--bind on loopback": _set_arg("--bind", "127.0.0.1:8000"),
    "containerPort": _set_container_port,
    "probe port by number": _set_probe("readinessProbe", "port", 9000),
    "probe port by an unknown name": _set_probe("livenessProbe", "port", "web"),
    "Service targetPort": _set_service_port,
    "Service selector": _other_service_selector,
    "grace period below drain + graceful + margin": _set_grace(44),
    "--graceful-timeout raised alone": _set_arg("--graceful-timeout", "31"),
    "--drain-delay raised alone": _set_arg("--drain-delay", "11"),
    "--drain-delay shorter than readiness detection": _set_arg("--drain-delay", "4"),
    "readiness period too long": _set_probe("readinessProbe", "periodSeconds", 5),
    "readiness failure threshold too high": _set_probe("readinessProbe", "failureThreshold", 5),
    "preStop sleep": _add_pre_stop,
    "no limits": _drop_limits,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_agreement_check_catches(fault):
    resources = copy.deepcopy(load_resources())
    FAULTS[fault](resources)
    with pytest.raises(AssertionError):
        check_agreement(resources)


def test_container_command_line_is_accepted_by_geventserve():
    container = _container(load_resources())
    _, positional = server_flags(container["args"])
    # the image's /srv/app is examples/ here (the last --chdir wins)
    args = [*container["args"], "--chdir", os.path.join(ROOT, "examples")]
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEVENTSERVE_CMD_ARGS", "WEB_CONCURRENCY", "PYTHONPATH")}
    result = run_command([sys.executable, "-m", "geventserve", *args, "--check-config"],
                         timeout=60, cwd=ROOT, env=env)
    if result.returncode == 2 and "unrecognized arguments: " in result.stderr:
        unknown = result.stderr.split("unrecognized arguments: ", 1)[1].split(" (see")[0].split()
        if all(item.partition("=")[0] in PENDING_FLAGS for item in unknown):
            pytest.skip(f"geventserve does not have {', '.join(PENDING_FLAGS)} yet")
    assert result.returncode == 0, result.stderr
    assert f"{positional[0]} loads with the gevent worker" in result.stdout
