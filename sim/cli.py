"""`mitigate sim ...`: run the simulated fleet on a cluster, and inject or clear faults in a running one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

URL_NAME = "sim.url"  # in MITIGATE_STATE_DIR: where `sim run` says its control URL is


def _url_file() -> Path:
    from api.settings import get_settings

    return get_settings().state_dir / URL_NAME


def _fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return 2


def _url(args: argparse.Namespace) -> str | None:
    if args.url:
        return str(args.url)
    if os.environ.get("MITIGATE_SIM_URL"):
        return os.environ["MITIGATE_SIM_URL"]
    url_file = _url_file()
    return url_file.read_text().strip() if url_file.exists() else None


def cmd_sim_list(args: argparse.Namespace) -> int:
    from sim.faults import FAULTS
    from sim.fleet import DEFAULT_TARGETS

    for name, spec in FAULTS.items():
        print(f"{name:20} {spec.scope:6} default target {DEFAULT_TARGETS[name]:24} {spec.description}")
    return 0


def cmd_sim_run(args: argparse.Namespace) -> int:
    from kubernetes import config

    from sim.fleet import Fleet

    if not args.kubeconfig.exists():
        return _fail(f"{args.kubeconfig} does not exist (scripts/kube up writes DIR/admin.kubeconfig)")
    fleet = Fleet(config.new_client_from_config(config_file=str(args.kubeconfig)))
    port = fleet.start(port=args.port)
    url_file = _url_file()
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(f"http://127.0.0.1:{port}\n")
    print(f"fleet up: metrics at http://127.0.0.1:{port}/metrics; inject with `mitigate sim inject NAME`", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        fleet.stop()
        url_file.unlink(missing_ok=True)


def _call(args: argparse.Namespace, method: str, body: dict[str, Any] | None = None) -> int:
    import httpx

    url = _url(args)
    if url is None:
        return _fail("no running fleet: start one with `mitigate sim run`, or pass --url")
    try:
        response = httpx.request(method, f"{url}/faults", json=body, timeout=10)
    except httpx.HTTPError as exc:
        return _fail(f"the fleet at {url} did not answer: {exc}")
    if response.status_code >= 400:
        return _fail(response.json().get("error", response.text))
    print(json.dumps(response.json(), indent=1))
    return 0


def cmd_sim_inject(args: argparse.Namespace) -> int:
    return _call(args, "POST", {"name": args.name, "target": args.target})


def cmd_sim_clear(args: argparse.Namespace) -> int:
    return _call(args, "DELETE")


def cmd_sim_faults(args: argparse.Namespace) -> int:
    return _call(args, "GET")


def add_sim_commands(sub: Any) -> None:
    sim = sub.add_parser("sim", help="the simulated LLM serving fleet: run it, inject faults")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    listing = sim_sub.add_parser("list", help="the fault scenarios and what they do")
    listing.set_defaults(func=cmd_sim_list)
    run = sim_sub.add_parser("run", help="run the fleet on a cluster until Ctrl-C")
    run.add_argument("--kubeconfig", type=Path, required=True, help="an admin kubeconfig (the fleet plays the kubelet)")
    run.add_argument("--port", type=int, default=0, help="exporter and control port on 127.0.0.1 (default: free)")
    run.set_defaults(func=cmd_sim_run)
    for name, text, func in (
        ("inject", "inject a fault into the running fleet", cmd_sim_inject),
        ("clear", "clear every fault", cmd_sim_clear),
        ("faults", "the faults active now", cmd_sim_faults),
    ):
        p = sim_sub.add_parser(name, help=text)
        if name == "inject":
            p.add_argument("name", help="a fault (see `mitigate sim list`)")
            p.add_argument("--target", help="model, MODEL/REGION, node or pod (default: the scenario's own)")
        p.add_argument(
            "--url", help=f"the fleet's control URL (default $MITIGATE_SIM_URL or {URL_NAME} in the state directory)"
        )
        p.set_defaults(func=func)
