"""Build the graph's run context and checkpointer from Settings: the one place clients are made."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.context import Recorder, TriageContext
from agent.rulebook import DEFAULT_RULEBOOK, load_rulebook
from api.index_holder import LazyRetriever, open_postmortem_index
from api.settings import Settings
from store.db import make_engine, migrate, session_factory
from store.incident_queries import IncidentQueries
from store.recorder import StoreRecorder
from tools.guard import DEFAULT_POLICY, load_policy


def make_llm(settings: Settings) -> Any:
    from openai import OpenAI

    from agent.llm import CallLimits, LLMEngine

    # The engine makes and counts every request itself, against one deadline per call: the SDK's own
    # retries would multiply the real limit by (1 + retries) and hide the extra requests.
    client = OpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() or "not-needed",
        timeout=settings.llm_timeout_s,
        max_retries=0,
    )
    limits = CallLimits(settings.llm_timeout_s, settings.llm_max_retries, settings.llm_max_tokens)
    return LLMEngine(client, settings.llm_model, load_rulebook(settings.rulebook_path or DEFAULT_RULEBOOK), limits)


def make_explorer(settings: Settings, cluster: Any, metrics: Any, retriever: Any, recorder: Recorder) -> Any:
    """The LLM's read-only tool loop over whatever sources are configured (None when switched off)."""
    if settings.explore_max_steps == 0:
        return None
    from agent.explore import ExploreBudget, Explorer
    from store.incident_search import IncidentSearch
    from tools.investigate import Bounds, KubeSource
    from tools.read_tools.catalog import READ_TOOLS
    from tools.read_tools.registry import ReadSources
    from tools.read_tools.sources import ReadOnlyCluster, RetrieverSearch

    policy = load_policy(settings.policy_path or DEFAULT_POLICY)
    sources = ReadSources(
        namespaces=policy.allowed_namespaces,
        cluster=ReadOnlyCluster(cluster) if cluster is not None else None,
        metrics=metrics,
        postmortems=RetrieverSearch(retriever) if retriever is not None else None,
        incidents=IncidentSearch(recorder.sessions) if isinstance(recorder, StoreRecorder) else None,
        # The deterministic investigation's handles and bounds (make_investigator), for its own functions.
        kube=KubeSource(cluster.apps.api_client, policy.allowed_namespaces) if cluster is not None else None,
        trends=metrics,
        store=recorder.sessions if isinstance(recorder, StoreRecorder) else None,
        bounds=Bounds(changes_hours=settings.investigate_hours),
    )
    budget = ExploreBudget(settings.explore_max_steps, settings.explore_max_tokens, settings.explore_max_seconds)
    return Explorer(READ_TOOLS, sources, budget)


def make_cluster(settings: Settings) -> Any:
    if settings.kubeconfig is None:
        return None
    from api.settings import SettingsError
    from tools.cluster import connect

    policy = load_policy(settings.policy_path or DEFAULT_POLICY)
    approved = str(settings.kube_approved_kubeconfig) if settings.kube_approved_kubeconfig else None
    try:
        return connect(str(settings.kubeconfig), approved, policy=policy)
    except Exception as exc:  # kubernetes' ConfigException, a YAML error, an unreadable file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SettingsError(
            f"MITIGATE_KUBECONFIG ({settings.kubeconfig}) or MITIGATE_KUBE_APPROVED_KUBECONFIG is not a usable "
            f"kubeconfig: {first} (docs/cluster-tools.md; unset it to propose plans without a cluster)"
        ) from exc


def shared_embedder() -> Any:
    """One sentence embedder per process: the judgement and the postmortem index read the same model."""
    from tools.embeddings import shared_embedder as shared

    return shared()


@cache
def load_model(model_path: Path | None, use_model: bool, rulebook_path: Path | None) -> tuple[Any, str | None]:
    """The judgement model, loaded once per process, or None and the reason (named at start-up, shown
    on /readyz and in every report): a missing, corrupt or stale artefact is never used silently."""
    if not use_model:
        return None, "MITIGATE_USE_MODEL=false: the rulebook alone classifies"
    from agent.judgement import DEFAULT_ARTEFACT, ModelArtefactError, load_judgement

    try:
        return load_judgement(model_path or DEFAULT_ARTEFACT, load_rulebook(rulebook_path or DEFAULT_RULEBOOK)), None
    except ModelArtefactError as exc:
        return None, str(exc)


__all__ = ["open_postmortem_index"]  # re-exported: the CLI and benchmarks open the index through here


def make_approvers(settings: Settings) -> Any:
    from tools.approvers import load_approvers

    return load_approvers(settings.approvers_file)


def make_metrics(settings: Settings) -> Any:
    """Live signals and SLA verification from Prometheus, when one is configured."""
    if not settings.prometheus_url:
        return None
    from tools.metrics import MetricsSettings, PrometheusMetrics

    return PrometheusMetrics(
        settings.prometheus_url,
        MetricsSettings(
            window=settings.prometheus_window,
            lookback=settings.prometheus_lookback,
            sla_target=settings.sla_target,
            stable_s=settings.sla_stable_s,
            deadline_s=settings.sla_deadline_s,
            poll_s=settings.sla_poll_s,
        ),
    )


def make_localizer(settings: Settings) -> Any:
    """Fault localisation over Prometheus for restart plans, when one is configured."""
    if not settings.prometheus_url:
        return None
    from tools.rca.localize import PrometheusLocalizer

    return PrometheusLocalizer(settings.prometheus_url, reference_s=settings.rca_reference_s)


def make_investigator(settings: Settings, cluster: Any, metrics: Any, recorder: Recorder) -> Any:
    """Read-only investigation over the same clients triage already has: the cluster's API client (its
    deadlines set), Prometheus, the incident store. Missing ones become stated gaps in every run."""
    from tools.investigate import Bounds, Investigator, KubeSource

    policy = load_policy(settings.policy_path or DEFAULT_POLICY)
    kube = KubeSource(cluster.apps.api_client, policy.allowed_namespaces) if cluster is not None else None
    return Investigator(
        kube,
        metrics.url if metrics is not None else None,
        metrics.trend_queries if metrics is not None else None,
        recorder.sessions if isinstance(recorder, StoreRecorder) else None,
        bounds=Bounds(changes_hours=settings.investigate_hours),
        budget_s=settings.investigate_budget_s,
    )


def make_retriever(settings: Settings) -> Any:
    """Precedents when a postmortem index exists (after `mitigate postmortems ingest`), else none. The
    index opens on first search: a store that cannot open is a note in the run, never a failed run."""
    if settings.chroma_url is None and not (settings.state_dir / "postmortems.db").exists():
        return None
    return LazyRetriever(settings.state_dir, settings.chroma_url)


def warm_index(settings: Settings) -> None:
    """Open the postmortem index in the background at start-up, so a store that cannot open shows on
    /readyz at once (and the first triage does not wait for it). A failure is recorded, not raised."""
    if make_retriever(settings) is None:
        return
    import threading

    def warm() -> None:
        with contextlib.suppress(Exception):  # index_problem() has the reason; runs go on without precedents
            open_postmortem_index(settings.state_dir, settings.chroma_url)

    threading.Thread(target=warm, name="mitigate-index-warm", daemon=True).start()


def make_context(
    settings: Settings, recorder: Recorder, *, propose_only: bool | None = None, engine: str | None = None
) -> TriageContext:
    chosen = engine or settings.engine
    use_llm = settings.model_copy(update={"engine": chosen}).use_llm()
    metrics = make_metrics(settings)
    cluster, retriever = make_cluster(settings), make_retriever(settings)
    judgement, problem = load_model(settings.model_path, settings.use_model, settings.rulebook_path)
    from tools.verification import Verifier

    return TriageContext(
        rulebook=load_rulebook(settings.rulebook_path or DEFAULT_RULEBOOK),
        policy=load_policy(settings.policy_path or DEFAULT_POLICY),
        recorder=recorder,
        llm=make_llm(settings) if use_llm else None,
        explorer=make_explorer(settings, cluster, metrics, retriever, recorder) if use_llm else None,
        cluster=cluster,
        retriever=retriever,
        sla=Verifier(metrics) if metrics is not None else None,
        telemetry=metrics,
        localizer=make_localizer(settings),
        approvers=make_approvers(settings),
        propose_only=settings.propose_only if propose_only is None else propose_only,
        judgement=judgement,
        judgement_problem=problem,
        embedder=shared_embedder() if judgement is not None else None,
        history=IncidentQueries(recorder.sessions) if isinstance(recorder, StoreRecorder) else None,
        investigator=make_investigator(settings, cluster, metrics, recorder),
    )


@dataclass
class Store:
    recorder: StoreRecorder
    sessions: Any
    engine: Any

    @property
    def local(self) -> bool:
        """SQLite: a write is a sub-millisecond local call, cheaper inline than a hop to a thread."""
        return bool(self.engine.dialect.name == "sqlite")


def open_store(settings: Settings) -> Store:
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    return Store(StoreRecorder(sessions), sessions, engine)


@contextmanager
def open_checkpointer(database_url: str) -> Iterator[Any]:
    """LangGraph's checkpointer on the project's own database, so paused runs survive restarts."""
    if database_url.startswith("sqlite"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = database_url.split("///", 1)[1]
        sqlite_conn = sqlite3.connect(path, check_same_thread=False)
        sqlite_conn.execute("PRAGMA journal_mode=WAL")
        sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        sqlite_saver = SqliteSaver(sqlite_conn)
        sqlite_saver.setup()
        try:
            yield sqlite_saver
        finally:
            sqlite_conn.close()
    else:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            saver = PostgresSaver(conn)
            saver.setup()
            yield saver


def make_asker(settings: Settings, store: Store, llm: Any = None) -> Any:
    """Answers to questions about history (api/ask.py), from the store and the postmortem index."""
    from api.ask import Asker
    from store.incident_search import IncidentSearch
    from tools.read_tools.sources import RetrieverSearch

    retriever = make_retriever(settings)
    postmortems = RetrieverSearch(retriever) if retriever is not None else None
    return Asker(IncidentSearch(store.sessions), postmortems, settings.public_url, llm)
