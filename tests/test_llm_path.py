"""The LLM path through the real `openai` client against a scripted local server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from agent.graph import build_graph
from api.settings import Settings
from api.wiring import make_llm
from tests.fake_openai import FakeOpenAI

INCIDENT = {
    "id": "L-1",
    "title": "HTTP 408 on streaming completions",
    "description": "long generations cut off after 60 s, still failing",
    "alert": {
        "status": "firing",
        "labels": {"alertname": "High408", "namespace": "llm-serving", "deployment": "llama-70b"},
    },
}
VALID = {
    "category": "A3",
    "subcategory": "timeout",
    "confidence": 0.83,
    "rationale": "408s on streams",
    "evidence": ["HTTP 408"],
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _run(context, fake: FakeOpenAI, timeout: float = 5.0) -> dict[str, Any]:
    settings = Settings(
        llm_base_url=fake.base_url,
        llm_model="scripted",
        llm_api_key=SecretStr("sk-test-secret"),
        llm_timeout_s=timeout,
        llm_max_retries=0,
    )
    context.llm = make_llm(settings)
    return build_graph().invoke({"run_id": "r", "incident": INCIDENT}, context=context)["report"]


def test_valid_answers_are_used(context, fake):
    fake.script.extend(
        [
            ("json", {**VALID, "subcategory": "timeout"}),
            ("json", {"mitigation": "M1", "rationale": "apply keep-alive template"}),
        ]
    )
    report = _run(context, fake)
    assert report["engine"] == "llm" and report["confidence"] == 0.83
    assert report["mitigation"] == "M1" and report["plan"]["operation"] == "apply_connection_liveness_template"
    assert report["fallbacks"] == []
    assert sum(u["calls"] for u in report["llm_usage"]) == 2
    first = fake.requests[0]
    assert first["auth"] == "Bearer sk-test-secret"
    assert first["body"]["response_format"]["type"] == "json_schema"
    assert "<incident>" in first["body"]["messages"][0]["content"]


def test_an_endpoint_without_structured_outputs_gets_json_mode_with_the_schema(context):
    """llama-cpp-python's server refuses `json_schema`; the engine asks once, then uses JSON mode with
    the schema for every later call on that endpoint, and the answer is still validated and used."""
    with FakeOpenAI(json_schema=False) as fake:
        fake.script.extend(
            [
                ("json", VALID),
                ("json", {"mitigation": "M1", "rationale": "apply keep-alive template"}),
            ]
        )
        report = _run(context, fake)
        formats = [r["body"]["response_format"] for r in fake.requests]
        assert report["engine"] == "llm" and report["fallbacks"] == [] and report["confidence"] == 0.83
        assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
        assert formats[1]["schema"]["properties"]["category"]["enum"] == ["A1", "A2", "A3", "A4", "unknown"]
        assert sum(u["calls"] for u in report["llm_usage"]) == 3  # the refused call counts too
    with FakeOpenAI() as other:  # a 500 that is not about the format is a failure, not a downgrade
        other.script.append(("status", 500))
        report = _run(context, other)
        assert report["fallbacks"][0]["kind"] == "api_error"
        assert [r["body"]["response_format"]["type"] for r in other.requests] == ["json_schema"]


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        (("raw", "I think it is probably a timeout?"), "invalid_output"),
        (("json", {**VALID, "category": "A1"}), "invalid_output"),  # timeout is not an A1 subcategory
        (("json", {**VALID, "confidence": 7}), "invalid_output"),
        (("status", 500), "api_error"),
        (("sleep", 3), "timeout"),
    ],
)
def test_failures_fall_back_to_the_rulebook_and_are_recorded(context, fake, script, kind):
    fake.script.append(script)
    report = _run(context, fake, timeout=1.0)
    assert report["engine"] == "rulebook"
    assert (report["category"], report["subcategory"]) == ("A3", "timeout")
    assert report["fallbacks"][0]["stage"] == "classify" and report["fallbacks"][0]["kind"] == kind
    assert any("fell back to the rulebook" in note for note in report["notes"])
    usage = next(u for u in report["llm_usage"] if u["stage"] == "classify")
    # An answer that fails validation was still paid for; an error or a timeout has no usage to count.
    answered = kind == "invalid_output"
    assert (usage["calls"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        1,
        *((100, 20) if answered else (0, 0)),
    )


def test_llm_cannot_declare_no_action_while_impact_is_ongoing(context, fake):
    fake.script.extend([("json", VALID), ("json", {"mitigation": "M5", "rationale": "looks transient"})])
    report = _run(context, fake)
    assert report["mitigation"] != "M5"
    assert report["fallbacks"][0]["kind"] == "vetoed"


def test_api_key_is_not_in_settings_repr():
    settings = Settings(llm_api_key=SecretStr("sk-very-secret"))
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in str(settings.model_dump())
