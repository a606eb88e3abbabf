"""One Settings object, from the environment (MITIGATE_*) or a .env file, built on first use."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from api.run_faults import RetryPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MITIGATE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///.mitigate/mitigate.db",
        description="SQLAlchemy URL; SQLite file by default, postgresql://... for several replicas",
    )
    engine: Literal["auto", "rulebook", "llm"] = Field(
        default="auto", description="auto: the LLM when one is configured, else the rulebook"
    )
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. http://host/v1")
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr = SecretStr("")
    llm_timeout_s: float = Field(default=30.0, gt=0, description="deadline of one LLM call, all retries included")
    llm_max_retries: int = Field(default=1, ge=0, description="retries of a timeout, connection error or 429/5xx")
    llm_max_tokens: int = Field(default=800, ge=16, description="the longest answer the endpoint may generate")
    llm_cost_per_1k_tokens: float = Field(
        default=0.0, ge=0, description="price of 1,000 tokens (prompt + completion) for eval costs; 0 = unpriced"
    )
    state_dir: Path = Field(default=Path(".mitigate"), description="local state: postmortem index, kube dir")
    chroma_url: str | None = Field(
        default=None, description="a Chroma server (http://host:port) instead of the embedded index under state_dir"
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus (http://host:port): live signals in triage and SLA verification"
    )
    prometheus_window: str = Field(default="5m", pattern=r"^\d+[smh]$", description="rate window of 'now'")
    prometheus_lookback: str = Field(default="30m", pattern=r"^\d+[smh]$", description="how far back peaks look")
    sla_target: float = Field(default=0.99, gt=0, le=1, description="successful / valid requests")
    sla_stable_s: float = Field(default=60.0, ge=0, description="the SLA must hold this long to count as recovered")
    sla_deadline_s: float = Field(default=600.0, gt=0, description="after an action, give up on recovery after this")
    sla_poll_s: float = Field(default=5.0, gt=0)
    rca_reference_s: float = Field(
        default=300.0, gt=0, description="fault localisation compares the incident with this much before it"
    )
    rulebook_path: Path | None = None
    model_path: Path | None = Field(
        default=None, description="the judgement model's metadata file (default agent/model/judgement.json)"
    )
    use_model: bool = Field(default=True, description="false: the rulebook alone classifies (uncalibrated)")
    policy_path: Path | None = None
    propose_only: bool = Field(default=False, description="never write to a cluster, even with one configured")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig of mitigate's cluster identity")
    kube_approved_kubeconfig: Path | None = Field(
        default=None, description="kubeconfig of the identity allowed to delete deployments (M6, after 2 approvals)"
    )

    # The service (mitigate serve). Every door is authenticated; unset secrets close their door.
    api_token: SecretStr = Field(default=SecretStr(""), description="bearer token for REST and approvals")
    alertmanager_token: SecretStr = Field(default=SecretStr(""), description="bearer token Alertmanager sends")
    incident_webhook_secret: SecretStr = Field(default=SecretStr(""), description="HMAC key for /webhooks/incident")
    pagerduty_webhook_secret: SecretStr = Field(default=SecretStr(""), description="PagerDuty v3 signing secret")
    webhook_replay_window_s: int = Field(default=300, gt=0)
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    rate_limit_per_minute: int = Field(default=600, gt=0, description="per source address and door")
    m5_precision_target: float = Field(
        default=0.95, ge=0, le=1, description="the M5 precision a team requires before trusting autonomous no-action"
    )
    datasets_dir: Path = Field(
        default=Path(__file__).resolve().parent.parent / "evals" / "datasets",
        description="labeled datasets the dashboard's gap report can read, by name",
    )
    alert_settle_s: float = Field(
        default=0.0, ge=0, le=3600, description="wait this long after an alert before triage (a blip heals first)"
    )
    alert_correlation_window_s: int = Field(
        default=3600, ge=0, description="alerts of one Alertmanager group join an open incident this recent; 0 = off"
    )
    worker_threads: int = Field(default=2, ge=1, le=32)
    run_retry_attempts: int = Field(
        default=3, ge=1, le=20, description="attempts of a run meeting infrastructure faults before it escalates"
    )
    run_retry_backoff_s: float = Field(default=5.0, ge=0, description="before the 2nd attempt; doubled each time")
    approvers_file: Path | None = Field(
        default=None,
        description="who may approve which risk tier, with per-person token hashes and chat ids "
        "(tools/approvers.py); unset: nobody can approve",
    )
    correlation_window_s: int = Field(
        default=1800,
        ge=0,
        description="alerts sharing a node/deployment/region cause join an open incident this recent",
    )
    own_action_window_s: int = Field(
        default=900,
        ge=0,
        description="alerts about what a run's action touched, this soon after it, join that incident",
    )

    # Slack (the bot is mounted at /slack/events when a signing secret is set).
    slack_bot_token: SecretStr = SecretStr("")
    slack_signing_secret: SecretStr = SecretStr("")
    slack_api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL")
    slack_alert_channel: str = Field(default="", description="channel for summaries of webhook incidents")

    # Microsoft Teams (the bot is mounted at /teams/messages when an app id is set).
    teams_app_id: str = ""
    teams_app_password: SecretStr = SecretStr("")
    teams_openid_metadata_url: str = Field(default="", description="override for sovereign/private clouds")
    teams_token_issuer: str = "https://api.botframework.com"

    def retry_policy(self) -> RetryPolicy:
        from api.run_faults import RetryPolicy

        return RetryPolicy(attempts=self.run_retry_attempts, backoff_s=self.run_retry_backoff_s)

    def use_llm(self) -> bool:
        if self.engine == "rulebook":
            return False
        if self.engine == "llm" and not self.llm_base_url:
            raise ValueError("MITIGATE_ENGINE=llm needs MITIGATE_LLM_BASE_URL")
        return bool(self.llm_base_url)


@cache
def get_settings() -> Settings:
    return Settings()
