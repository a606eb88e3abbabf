"""No library calls home: mitigate talks only to what it is configured to talk to (its database, the
LLM endpoint, Prometheus, the cluster, Slack/Teams, a Chroma server), which matters on an air-gapped
cluster and to anyone auditing egress.

Each switch below is the library's own documented off switch; `quiet()` is idempotent and cheap, and
runs before the libraries load (api/cli.py at start, tools/embeddings.py before onnxruntime).
tests/test_no_phone_home.py records every socket a triage and `mitigate serve` open.
"""

from __future__ import annotations

import os

# Environment switches, set only when the operator has not chosen otherwise.
ENVIRONMENT = {
    "ANONYMIZED_TELEMETRY": "False",  # chromadb's product telemetry (posthog), also a Chroma server's
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (pulled in by tokenizers/chromadb): never fetch a model
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",  # the cross-tool convention (huggingface_hub, posthog-based tools honour it)
    "OTEL_SDK_DISABLED": "true",  # opentelemetry (a chromadb dependency): no exporter is configured
}


def quiet() -> None:
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def quiet_onnxruntime(onnxruntime: object) -> None:
    """onnxruntime's telemetry events (sent to Microsoft by its telemetry provider) off, where the
    installed version has the switch (1.17+: `disable_telemetry_events`)."""
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
