"""Runs one step of a triage in its own process, for tests of crashes and restarts.

usage: python -m tests.proc_run start|resume|approve DB_URL LOG INCIDENT_JSON [RUN_ID] [--crash-in-verify]
Prints the outcome as JSON. The fake cluster appends every execution to LOG, so the test can count
cluster writes across processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from agent.schemas import Incident
from api.runs import resume_run, start_run
from api.settings import Settings
from api.wiring import open_checkpointer, open_store
from tests.approvers import REGISTRY
from tests.approvers import answer as approval_answer
from tests.fakes import FakeCluster, FakeSla


def main(argv: list[str]) -> None:
    phase, url, log, incident_path = argv[:4]
    settings = Settings(database_url=url)
    store = open_store(settings)
    from tools.guard import load_policy

    cluster: Any = FakeCluster(Path(log))
    if "--kubeconfig" in argv:  # the real API server instead of the fake
        from tools.cluster import connect

        cluster = connect(argv[argv.index("--kubeconfig") + 1])
    context = TriageContext(
        rulebook=load_rulebook(),
        policy=load_policy(),
        recorder=store.recorder,
        cluster=cluster,
        sla=FakeSla("verified", crash="--crash-in-verify" in argv),
        approvers=REGISTRY,
    )
    with open_checkpointer(url) as checkpointer:
        if phase == "start":
            payload = json.loads(Path(incident_path).read_text())
            outcome = start_run(
                Incident.model_validate(payload),
                source="test",
                payload=payload,
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )
        else:
            answer = approval_answer("alice") if phase == "approve" else None
            outcome = resume_run(
                argv[4], recorder=store.recorder, context=context, checkpointer=checkpointer, answer=answer
            )
    print(json.dumps(outcome.as_dict(), default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
