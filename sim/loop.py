"""The closed loop on one machine: the local Kubernetes control plane, the simulated fleet, real
Prometheus and Alertmanager, and `mitigate serve` acting under the demo policy. Used by
`mitigate demo` and by the end-to-end tests.

    with ClosedLoop(workdir) as loop:
        result = loop.run_scenario("timeout")   # inject, wait for the alert, the triage, the action, the SLA

Everything it starts it stops on exit (Ctrl-C included); a control plane passed in as `kube_dir` is
reused and left running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sim.fleet import Fleet
from sim.scenario import ScenarioResult, fill_from_timeline

ROOT = Path(__file__).resolve().parent.parent
DEMO_APPROVERS = ("dri-ana", "dri-ben")
BASELINE_S = 20.0  # every pod serves this long before a fault: localisation compares against it
TERMINAL = {
    "mitigated",
    "no_action",
    "escalated",
    "proposed",
    "rejected",
    "failed",
    "already_mitigated",
    "nothing_to_verify",
}
# The service's settings for the time-compressed simulator (production defaults are minutes).
LOOP_ENV = {
    "MITIGATE_ENGINE": "rulebook",
    "MITIGATE_POLICY_PATH": str(ROOT / "deploy" / "demo" / "policy.yaml"),
    "MITIGATE_PROMETHEUS_WINDOW": "5s",
    "MITIGATE_PROMETHEUS_LOOKBACK": "120s",
    "MITIGATE_SLA_STABLE_S": "8",
    "MITIGATE_SLA_DEADLINE_S": "90",
    "MITIGATE_SLA_POLL_S": "1",
    "MITIGATE_ALERT_SETTLE_S": "7",
    "MITIGATE_WORKER_THREADS": "2",
    "MITIGATE_RCA_REFERENCE_S": "30",
    # The fleet, Prometheus, the API server and mitigate share one machine here: a busy one must not
    # cut investigation short (its findings decide A2 in the rollout scenario); bench/ measures speed.
    "MITIGATE_INVESTIGATE_BUDGET_S": "20",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], Any], what: str, deadline_s: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + deadline_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {deadline_s:.0f}s waiting for {what}")
        time.sleep(poll_s)
    return value


def _closed(status: str) -> bool:
    from store.recorder import CLOSED_STATUSES

    return status in CLOSED_STATUSES or status.endswith("alert_resolved") or status in ("failed",)


class ClosedLoop:
    def __init__(
        self,
        workdir: Path,
        *,
        kube_dir: Path | None = None,
        state_dir: Path | None = None,
        say: Callable[[str], None] = lambda line: None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.own_kube = kube_dir is None
        self.kube_dir = (kube_dir or self.workdir / "kube").resolve()
        self.monitoring_dir = self.workdir / "monitoring"
        self.state_dir = state_dir
        self.say = say
        self.extra_env = extra_env or {}
        self.api_token = secrets.token_hex(16)
        self.service: subprocess.Popen[bytes] | None = None
        self.fleet: Fleet | None = None
        self.base_url = ""
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self._started: list[str] = []
        self.approver_tokens: dict[str, str] = {}
        self._approved: dict[str, set[str]] = {}

    # ---- start and stop -----------------------------------------------------------------------
    def __enter__(self) -> ClosedLoop:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _script(self, *args: str, timeout: float = 900) -> str:
        done = subprocess.run(
            [str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> None:
        from kubernetes import config

        # A fresh database, monitoring state and (unless one is reused) cluster on every run.
        if self.own_kube and self.workdir.exists():
            shutil.rmtree(self.workdir)
        for leftover in [self.monitoring_dir, *self.workdir.glob("mitigate.db*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        if self.own_kube:
            self.say("starting the Kubernetes control plane (etcd, kube-apiserver, controller-manager)")
            self._script("kube", "up", str(self.kube_dir))
            self._started.append("kube")
        api = config.new_client_from_config(config_file=str(self.kube_dir / "admin.kubeconfig"))
        self.say("starting the simulated fleet (fake GPU nodes, model deployments, exporter)")
        self.fleet = Fleet(api)
        fleet_port = self.fleet.start()
        service_port = _free_port()
        self.base_url = f"http://127.0.0.1:{service_port}"
        token_file = self.workdir / "alertmanager.token"
        am_token = secrets.token_hex(16)
        token_file.write_text(am_token)
        token_file.chmod(0o600)
        self.say("starting Prometheus and Alertmanager")
        self._script(
            "monitoring", "up", str(self.monitoring_dir), f"{self.base_url}/webhooks/alertmanager", str(token_file)
        )
        self._started.append("monitoring")
        self.prometheus_url = (self.monitoring_dir / "prometheus.url").read_text().strip()
        self.alertmanager_url = (self.monitoring_dir / "alertmanager.url").read_text().strip()
        self._script("monitoring", "target", str(self.monitoring_dir), "sim-fleet", f"127.0.0.1:{fleet_port}")
        self._script("monitoring", "target", str(self.monitoring_dir), "mitigate", f"127.0.0.1:{service_port}")
        approvers = self._demo_approvers()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
        env |= LOOP_ENV | {
            "MITIGATE_DATABASE_URL": f"sqlite:///{self.workdir}/mitigate.db",
            "MITIGATE_KUBECONFIG": str(self.kube_dir / "mitigate.kubeconfig"),
            # M6 runs only under the approved identity, after the demo's two DRIs approved it.
            "MITIGATE_KUBE_APPROVED_KUBECONFIG": str(self.kube_dir / "approved.kubeconfig"),
            "MITIGATE_APPROVERS_FILE": str(approvers),
            "MITIGATE_PROMETHEUS_URL": self.prometheus_url,
            "MITIGATE_ALERTMANAGER_TOKEN": am_token,
            "MITIGATE_API_TOKEN": self.api_token,
            **({"MITIGATE_STATE_DIR": str(self.state_dir)} if self.state_dir else {}),
            **self.extra_env,
        }
        self.say(f"starting mitigate serve on {self.base_url}")
        log = (self.workdir / "mitigate.log").open("wb")
        self.service = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(service_port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _until(self._service_ready, "mitigate serve to be ready", 60)
        _until(self._scraped, "Prometheus to scrape the fleet", 60)
        self.say(f"the loop is up in {time.monotonic() - started:.0f}s")

    def _demo_approvers(self) -> Path:
        """Two people who may approve anything on the simulated fleet: the demo's DRIs. A scenario the
        guard holds for approval (a deletion needs two different people) is approved by them, each with
        a reason, through the REST API like any approver; their tokens live only in this process."""
        from tools.approvers import token_hash

        self.approver_tokens = {person: secrets.token_hex(16) for person in DEMO_APPROVERS}
        lines = ["roles:", "  dri: [low, medium, high, critical]", "people:"]
        for person, token in self.approver_tokens.items():
            lines += [f"  {person}:", "    roles: [dri]", f"    token_sha256: {token_hash(token)}"]
        path = self.workdir / "approvers.yaml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def _approve(self, run: dict[str, Any], name: str) -> None:
        """Approve a paused run as each demo DRI in turn (the guard counts different people)."""
        plan = (run.get("report") or {}).get("plan") or {}
        for person, token in self.approver_tokens.items():
            if person in self._approved.get(run["id"], set()):
                continue
            response = httpx.post(
                f"{self.base_url}/runs/{run['id']}/approve",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "reason": f"demo DRI: the investigation's findings support {plan.get('operation') or 'the plan'}"
                },
                timeout=10,
            )
            self._approved.setdefault(run["id"], set()).add(person)
            self.say(f"[{name}] approved by {person}: HTTP {response.status_code}")
            return  # one approval per poll: the run resumes and asks again for the next

    def _service_ready(self) -> bool:
        if self.service is not None and self.service.poll() is not None:
            raise RuntimeError(f"mitigate serve exited: {(self.workdir / 'mitigate.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
        result: list[dict[str, Any]] = answer.get("data", {}).get("result", [])
        return result

    def _scraped(self) -> bool:
        return any(r["value"][1] == "1" for r in self.query('up{job="sim-fleet"}')) and bool(
            self.query("mitigate:sla:ratio10s")
        )

    def stop(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(timeout=10)
        if self.fleet is not None:
            self.fleet.stop()
        if "monitoring" in self._started:
            subprocess.run(
                [str(ROOT / "scripts" / "monitoring"), "down", str(self.monitoring_dir)], capture_output=True
            )
        if "kube" in self._started:
            subprocess.run([str(ROOT / "scripts" / "kube"), "down", str(self.kube_dir)], capture_output=True)
        self._started.clear()

    # ---- scenarios ----------------------------------------------------------------------------
    def _api(self, path: str) -> Any:
        response = httpx.get(
            f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def sla(self, incident: dict[str, Any]) -> float | None:
        """The SLA now of the incident's model, as the alert rules compute it."""
        model = ((incident.get("alert") or {}).get("labels") or {}).get("model")
        values = [float(r["value"][1]) for r in self.query(f'mitigate:sla:ratio10s{{model="{model}"}}')]
        return min(values) if values else None

    def _restored_by_itself(self, result: ScenarioResult, incident: dict[str, Any], deadline_s: float = 60) -> None:
        """After a "no action" decision, when the SLA was back by itself: that is its time to mitigate."""
        target = float(LOOP_ENV.get("MITIGATE_SLA_TARGET", "0.99"))
        try:
            _until(lambda: (self.sla(incident) or 0) >= target, "the SLA to recover by itself", deadline_s, 0.5)
        except TimeoutError:
            return  # not restored: no TTM, and sla_after shows it
        result.sla_after = self.sla(incident)
        if result.alert_started_at is not None:
            result.ttm_s = round((datetime.now(UTC) - result.alert_started_at).total_seconds(), 1)

    def active_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = httpx.get(
            f"{self.alertmanager_url}/api/v2/alerts", params={"active": "true"}, timeout=5
        ).json()
        return alerts

    def quiet(self, deadline_s: float = 120) -> None:
        """Until no alert is active, every model meets its SLA, and no incident is open."""

        assert self.fleet is not None
        fleet = self.fleet

        def calm() -> bool:
            if not fleet.pods_older_than(BASELINE_S):
                return False
            slas = [float(r["value"][1]) for r in self.query("mitigate:sla:ratio10s")]
            open_incidents = [i for i in self._api("/incidents?limit=500") if not _closed(i["status"])]
            return not self.active_alerts() and bool(slas) and min(slas) >= 0.995 and not open_incidents

        _until(calm, "the fleet to be quiet (no alerts, SLA met)", deadline_s, poll_s=1)

    def reset(self) -> None:
        assert self.fleet is not None
        self.fleet.reset()
        self.fleet.wait_ready()

    def run_scenario(self, name: str, deadline_s: float = 240, *, reset: bool = True) -> ScenarioResult:
        """Put the fleet back as it was, wait for quiet, inject `name`, and follow the incident it opens
        to the end of its triage."""
        assert self.fleet is not None
        if reset:
            self.reset()
        self.quiet()
        known = {i["id"] for i in self._api("/incidents?limit=500")}
        injected_at = datetime.now(UTC)
        fault = self.fleet.inject(name)
        self.say(f"[{name}] fault injected: {fault['description']} (on {fault['target']})")
        result = ScenarioResult(name, injected_at, str(fault["target"]))

        def new_incident() -> dict[str, Any] | None:
            fresh = [
                i for i in self._api("/incidents?limit=500") if i["id"] not in known and i["status"] != "correlated"
            ]
            return fresh[-1] if fresh else None

        incident = _until(new_incident, f"an alert to open an incident for {name}", deadline_s, poll_s=0.5)
        result.incident_id = incident["id"]
        self.say(f"[{name}] alert reached mitigate: {incident['title'][:120]}")

        def finished() -> dict[str, Any] | None:
            timeline: dict[str, Any] = self._api(f"/incidents/{incident['id']}")
            runs = timeline["runs"]
            if runs and runs[-1]["status"] == "awaiting_approval":
                self._approve(runs[-1], name)
            return timeline if runs and runs[-1]["status"] in TERMINAL else None

        timeline = _until(finished, f"the triage of {name} to finish", deadline_s, poll_s=0.5)
        fill_from_timeline(result, timeline)
        result.others = [
            f"{i['id']} {i['status']} {i['title'][:100]!r}"
            for i in self._api("/incidents?limit=500")
            if i["id"] not in known and i["id"] != incident["id"]
        ]
        if result.status == "no_action":
            self._restored_by_itself(result, timeline["incident"])
        if result.sla_after is None:
            result.sla_after = self.sla(timeline["incident"])
        self.fleet.clear()
        return result
