from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.context import MemoryRecorder, TriageContext
from agent.rulebook import Rulebook, load_rulebook
from tools.guard import Policy, load_policy

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.kube_fixture", "tests.dashboard_fixture"]
LOOPBACK = {"localhost", "127.0.0.1", "::1", None}


@pytest.fixture(autouse=True)
def _offline(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test can reach an LLM (or anything else) by accident: only loopback resolves, and no
    LLM endpoint or key from the developer's environment leaks in. Tests marked `live_llm` opt out.
    Nor does any test read or write the developer's own state (database, postmortem index): the
    default state directory is a fresh one per test, for this process and the ones it starts."""
    if request.node.get_closest_marker("live_llm"):
        yield
        return
    for name in list(os.environ):
        if name.startswith(("MITIGATE_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            raise OSError(f"tests are offline: refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    from api.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def rulebook() -> Rulebook:
    return load_rulebook()


@pytest.fixture
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def context(rulebook: Rulebook, policy: Policy) -> TriageContext:
    from tests.approvers import REGISTRY

    return TriageContext(rulebook=rulebook, policy=policy, recorder=MemoryRecorder(), approvers=REGISTRY)


@pytest.fixture(scope="session")
def embedder() -> Any:
    from tools.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def judgement() -> Any:
    """The committed judgement artefact (agent/model/); rebuilt by scripts/setup when stale."""
    from agent.judgement import DEFAULT_ARTEFACT, load_judgement

    return load_judgement(DEFAULT_ARTEFACT, load_rulebook())


@pytest.fixture
def judged_context(context: TriageContext, judgement: Any, embedder: Any) -> TriageContext:
    context.judgement, context.embedder = judgement, embedder
    return context


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mitigate.db"


def incident(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "INC-1", "title": "", "description": ""}
    base.update(fields)
    return base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated incident store's sessions, on SQLite and on the PostgreSQL of these machines."""
    from api.settings import Settings
    from api.wiring import open_store
    from tests.db_urls import postgres_schema_url

    if request.param == "sqlite":
        yield open_store(Settings(database_url=f"sqlite:///{tmp_path}/store.db")).sessions
    else:
        with postgres_schema_url() as url:
            yield open_store(Settings(database_url=url)).sessions
