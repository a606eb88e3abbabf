"""A real Kubernetes control plane for the test session (scripts/kube up/down), and helpers to talk to
it as admin (to arrange and inspect) and as mitigate's least-privilege identity (to act)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT


@dataclass
class ControlPlane:
    dir: Path
    admin_kubeconfig: Path
    mitigate_kubeconfig: Path
    approved_kubeconfig: Path
    server: str

    def admin(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.admin_kubeconfig))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state = tmp_path_factory.mktemp("kube")
    started = time.monotonic()
    up = subprocess.run(
        [str(ROOT / "scripts" / "kube"), "up", str(state)], capture_output=True, text=True, timeout=3000
    )
    try:
        if up.returncode != 0:
            pytest.fail(f"scripts/kube up failed:\n{up.stderr[-4000:]}")
        print(f"\ncontrol plane up in {time.monotonic() - started:.1f}s")
        yield ControlPlane(
            state,
            state / "admin.kubeconfig",
            state / "mitigate.kubeconfig",
            state / "approved.kubeconfig",
            (state / "server").read_text().strip(),
        )
    finally:
        subprocess.run([str(ROOT / "scripts" / "kube"), "down", str(state)], capture_output=True, timeout=120)
