"""One Settings object, from the environment (MITIGATE_*) or a .env file, built on first use.

State (the SQLite database, the postmortem index, the demo's scratch space) lives in one directory
whatever the working directory: MITIGATE_STATE_DIR, else $XDG_STATE_HOME/mitigate, else
~/.local/state/mitigate. A bad value is a `SettingsError` naming the variable; a MITIGATE_* variable
that is no setting (a typo) is warned about with the closest real name.
"""

from __future__ import annotations

import difflib
import logging
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from api.run_faults import RetryPolicy

log = logging.getLogger("mitigate.settings")
PREFIX = "MITIGATE_"
DOC = "README.md#configuration"
# MITIGATE_* variables that are read elsewhere (the CLI, tests, deploy templates): not typos.
OTHER_VARIABLES = {
    "MITIGATE_APPROVER_TOKEN": "your personal approver token, for `mitigate approve|reject`",
    "MITIGATE_SIM_URL": "the simulated fleet's control URL, for `mitigate sim`",
    "MITIGATE_WEBHOOK_URL": "deploy/alertmanager: where Alertmanager sends alerts",
    "MITIGATE_ALERTMANAGER_TOKEN_FILE": "deploy/alertmanager: the file holding MITIGATE_ALERTMANAGER_TOKEN",
    "MITIGATE_REQUIRE_POSTGRES": "tests: fail (1) or skip (0) the PostgreSQL tests when none answers",
    "MITIGATE_TEST_POSTGRES_URL": "tests: the PostgreSQL server of the suite",
    "MITIGATE_LIVE_LLM_BASE_URL": "tests: a real endpoint for the opt-in live LLM tests",
    "MITIGATE_LIVE_LLM_MODEL": "tests: its model name",
    "MITIGATE_LIVE_LLM_API_KEY": "tests: its key",
}


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the MITIGATE_* variable and where to read."""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mitigate"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="local state: the SQLite database, the postmortem index, the demo's scratch space "
        "(default `$XDG_STATE_HOME/mitigate`, else `~/.local/state/mitigate`)",
    )
    database_url: str = Field(
        default="",
        description="runs, actions, approvals, evals and LangGraph checkpoints (default "
        "`sqlite:///$STATE_DIR/mitigate.db`); `postgresql://user@host/db` for several replicas",
    )
    engine: Literal["auto", "rulebook", "llm"] = Field(
        default="auto", description="`rulebook`, `llm`, or `auto` (the LLM when one is configured)"
    )
    llm_base_url: str | None = Field(
        default=None, description="any OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`"
    )
    llm_model: str = Field(default="gpt-4o-mini", description="model name sent to the endpoint")
    llm_api_key: SecretStr = Field(default=SecretStr(""), description="secret; never logged or printed")
    llm_timeout_s: float = Field(default=30.0, gt=0, description="deadline of one LLM call, all retries included")
    llm_max_retries: int = Field(default=1, ge=0, description="retries of a timeout, connection error or 429/5xx")
    llm_max_tokens: int = Field(default=800, ge=16, description="the longest answer the endpoint may generate")
    llm_cost_per_1k_tokens: float = Field(
        default=0.0, ge=0, description="price of 1,000 tokens (prompt + completion) for eval costs; 0 = unpriced"
    )
    explore_max_steps: int = Field(
        default=6,
        ge=0,
        le=50,
        description="model turns of the LLM's read-only tool loop before classify (docs/tool-loop.md); 0 = off",
    )
    explore_max_tokens: int = Field(default=24_000, ge=1000, description="tokens the tool loop may spend per run")
    explore_max_seconds: float = Field(default=60.0, gt=0, description="seconds the tool loop may take per run")
    chroma_url: str | None = Field(
        default=None, description="a Chroma server (`http://host:port`) instead of the embedded index"
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus: live signals at intake, the baseline before an action and its verification "
        "after; unset: executed actions are unverified and escalate",
    )
    prometheus_window: str = Field(default="5m", pattern=r"^\d+[smh]$", description="rate window of 'now'")
    prometheus_lookback: str = Field(default="30m", pattern=r"^\d+[smh]$", description="how far back peaks look")
    sla_target: float = Field(default=0.99, gt=0, le=1, description="successful / valid requests (client 4xx excluded)")
    sla_stable_s: float = Field(default=60.0, ge=0, description="the SLA must hold this long to count as recovered")
    sla_deadline_s: float = Field(default=600.0, gt=0, description="after an action, not recovered after this")
    sla_poll_s: float = Field(default=5.0, gt=0, description="how often verification reads Prometheus")
    rca_reference_s: float = Field(
        default=300.0, gt=0, description="fault localisation compares the incident with this much before it"
    )
    investigate_hours: float = Field(
        default=6.0, gt=0, le=168, description="investigation reports changes to the target made this many hours back"
    )
    investigate_budget_s: float = Field(
        default=3.0, gt=0, le=60, description="investigation's time budget per run (each call has its own deadline)"
    )
    rulebook_path: Path | None = Field(default=None, description="the taxonomy rules (default `agent/rulebook.yaml`)")
    model_path: Path | None = Field(
        default=None, description="the judgement model (default `agent/model/judgement.json`, built by setup)"
    )
    use_model: bool = Field(default=True, description="`false`: the rulebook alone classifies (uncalibrated)")
    policy_path: Path | None = Field(default=None, description="the guard policy (default `tools/policy.yaml`)")
    propose_only: bool = Field(default=False, description="never write to a cluster, even with one configured")
    kubeconfig: Path | None = Field(
        default=None,
        description="mitigate's cluster identity (least privilege, `deploy/rbac.yaml`); unset: plans are proposed",
    )
    kube_approved_kubeconfig: Path | None = Field(
        default=None, description="the identity allowed to delete deployments, used only for a twice-approved M6"
    )

    # The service (mitigate serve). Every door is authenticated; unset secrets close their door.
    api_token: SecretStr = Field(
        default=SecretStr(""), description="secret: bearer token for REST reads and the read-only dashboard"
    )
    alertmanager_token: SecretStr = Field(default=SecretStr(""), description="secret: bearer token Alertmanager sends")
    incident_webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="secret: HMAC key of `/webhooks/incident`"
    )
    pagerduty_webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="secret: PagerDuty v3 signing secret of `/webhooks/pagerduty`"
    )
    webhook_replay_window_s: int = Field(default=300, gt=0, description="signed webhooks older than this are refused")
    max_body_bytes: int = Field(default=1_000_000, gt=0, description="larger request bodies get 413")
    rate_limit_per_minute: int = Field(
        default=600,
        gt=0,
        description="requests per credential and door on REST, approvals and chat, counted after authentication; "
        "Alertmanager, PagerDuty and the incident webhook are never rate-limited",
    )
    ingest_wait_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="how long a webhook waits for the database to commit an alert before answering 503 with "
        "Retry-After (the sender retries; nothing is lost)",
    )
    m5_precision_target: float = Field(
        default=0.95, ge=0, le=1, description="the M5 precision line on the dashboard (autonomous no-action)"
    )
    datasets_dir: Path = Field(
        default=Path(__file__).resolve().parent.parent / "evals" / "datasets",
        description="labelled datasets the dashboard's gap report opens by name (default `evals/datasets`)",
    )
    public_url: str = Field(
        default="",
        description="where people reach `mitigate serve` (e.g. `https://mitigate.example.com`): chat messages "
        "link to the dashboard with it; unset: no link",
    )
    alert_settle_s: float = Field(
        default=0.0, ge=0, le=3600, description="wait this long after an alert before triage (a blip heals first)"
    )
    alert_correlation_window_s: int = Field(
        default=3600, ge=0, description="alerts of one Alertmanager group join an open incident this recent; 0 = off"
    )
    worker_threads: int = Field(
        default=2, ge=1, le=32, description="runs executed at once by `mitigate serve` (and by each `mitigate worker`)"
    )
    serve_worker: bool = Field(
        default=True,
        description="`mitigate serve` also executes runs; `false` (PostgreSQL only): only `mitigate worker` "
        "processes do. With SQLite, `serve` always executes its runs",
    )
    queue_lease_s: float = Field(
        default=10.0,
        ge=2,
        le=600,
        description="PostgreSQL: a worker without a heartbeat this long is dead and its runs go to another "
        "replica (heartbeat every lease/5; docs/queue.md)",
    )
    run_retry_attempts: int = Field(
        default=3, ge=1, le=20, description="attempts of a run meeting infrastructure faults before it escalates"
    )
    run_retry_backoff_s: float = Field(
        default=5.0, ge=0, description="before the 2nd attempt; doubled each time, at most 300 s"
    )
    prune_after_days: float = Field(
        default=30.0,
        ge=0,
        description="`mitigate serve` deletes, hourly, the checkpoints and step rows of runs finished longer ago "
        "(audit trail kept; `mitigate db prune`); 0 = keep for ever",
    )
    approvers_file: Path | None = Field(
        default=None,
        description="who may approve which risk tier: people, roles, personal token hashes, Slack and Teams "
        "ids; unset: nobody can approve",
    )
    correlation_window_s: int = Field(
        default=1800,
        ge=0,
        description="alerts sharing a node, a deployment or a region-wide alert with an open incident this "
        "recent join it; 0 = off",
    )
    own_action_window_s: int = Field(
        default=900,
        ge=0,
        description="alerts about what a run's action touched, this soon after it and before it verified "
        "recovery, join its incident; 0 = off",
    )

    # Slack (the bot is mounted at /slack/events when a signing secret is set).
    slack_bot_token: SecretStr = Field(default=SecretStr(""), description="secret: the bot's `xoxb-` token")
    slack_signing_secret: SecretStr = Field(
        default=SecretStr(""), description="secret: Slack's signing secret; set, the bot is on `/slack/events`"
    )
    slack_api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL")
    slack_alert_channel: str = Field(default="", description="channel for summaries of webhook incidents")

    # Microsoft Teams (the bot is mounted at /teams/messages when an app id is set).
    teams_app_id: str = Field(default="", description="the bot's app id; set, the bot is on `/teams/messages`")
    teams_app_password: SecretStr = Field(default=SecretStr(""), description="secret: the bot's app password")
    teams_openid_metadata_url: str = Field(default="", description="override for sovereign or private clouds")
    teams_token_issuer: str = Field(
        default="https://api.botframework.com", description="the token issuer with that override"
    )

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        self.state_dir = self.state_dir.expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'mitigate.db'}"
        for name in ("kubeconfig", "kube_approved_kubeconfig", "approvers_file", "rulebook_path", "policy_path"):
            path = getattr(self, name)
            if path is not None and not Path(path).expanduser().is_file():
                raise ValueError(f"{env_name(name)}={path}: no such file")
        return self

    def retry_policy(self) -> RetryPolicy:
        from api.run_faults import RetryPolicy

        return RetryPolicy(attempts=self.run_retry_attempts, backoff_s=self.run_retry_backoff_s)

    def use_llm(self) -> bool:
        if self.engine == "rulebook":
            return False
        if self.engine == "llm" and not self.llm_base_url:
            raise SettingsError(
                "the LLM engine needs an endpoint: set MITIGATE_LLM_BASE_URL (any OpenAI-compatible URL, "
                f"e.g. http://127.0.0.1:8000/v1), or use --engine rulebook ({DOC})"
            )
        return bool(self.llm_base_url)


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def _secret(field: str) -> bool:
    return any(word in field for word in ("token", "secret", "password", "key"))


def explain(exc: ValidationError) -> str:
    """One line per wrong setting, naming its variable; secret values are never repeated."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not field:  # a model-level check: its message names the variable already
            lines.append(message)
            continue
        shown = "" if _secret(field) else f"={error.get('input')!r}"
        lines.append(f"{env_name(field)}{shown}: {message}")
    return "; ".join(lines) + f" (see {DOC})"


def unknown_variables(environ: dict[str, str | None] | None = None) -> list[str]:
    """MITIGATE_* names in the environment and .env that no setting reads, each with the closest real name."""
    known = {env_name(f) for f in Settings.model_fields} | set(OTHER_VARIABLES)
    names = set(os.environ if environ is None else environ)
    if environ is None and Path(".env").is_file():
        from dotenv import dotenv_values

        names |= set(dotenv_values(".env"))
    found = []
    for name in sorted(n for n in names if n.upper().startswith(PREFIX) and n.upper() not in known):
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        found.append(f"{name} is not a mitigate setting{hint}; it is ignored ({DOC})")
    return found


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(explain(exc)) from None


@cache
def get_settings() -> Settings:
    for warning in unknown_variables():
        log.warning("%s", warning)
    return load_settings()
