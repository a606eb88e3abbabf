"""Stop and start again the kube-apiserver of a control plane that `scripts/kube up DIR` started (its
pid is the second line of DIR/pids), with the same command line, port and certificates: clients see
the API server go away and come back, as in an outage."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.waiting import until


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie nobody reaped has stopped all the same


class ApiServer:
    def __init__(self, directory: Path, admin: Any) -> None:
        self.dir = directory
        self.admin = admin  # an ApiClient on the admin kubeconfig, to see when it answers again
        self.command: list[bytes] = []
        self.process: subprocess.Popen[bytes] | None = None

    def _pids(self) -> list[str]:
        return (self.dir / "pids").read_text().split()

    @property
    def pid(self) -> int:
        return int(self._pids()[1])

    def stop(self) -> None:
        pid = self.pid
        self.command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        os.kill(pid, signal.SIGKILL)  # an outage, not a graceful drain (that waits out every watch)
        until(lambda: not _alive(pid), "the API server to stop", 30)

    def close(self) -> None:
        """Stop (and reap) the API server this helper started, so that `scripts/kube down` finds no zombie."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def start(self) -> None:
        from kubernetes import client

        log = (self.dir / "apiserver.log").open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pids = self._pids()
        pids[1] = str(self.process.pid)  # `scripts/kube down` stops this one
        (self.dir / "pids").write_text("\n".join(pids) + "\n")

        def answers() -> bool:
            # Answering a read as admin is not enough: until /readyz passes (RBAC and informers
            # synced), a least-privilege identity can still be refused, and a test would see a flake.
            try:
                client.CoreV1Api(self.admin).read_namespace("default", _request_timeout=2)
                host = self.admin.configuration.host
                ready = self.admin.rest_client.request("GET", f"{host}/readyz", _request_timeout=2)
                return bool(ready.status == 200)
            except Exception:
                time.sleep(0.2)
                return False

        until(answers, "the API server to answer again", 90)
