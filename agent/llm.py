"""The LLM path: classification and planning through any OpenAI-compatible endpoint.

Every answer must be structured output that validates against a pydantic model and against the
rulebook's vocabulary; anything else (timeout, HTTP error, refusal, malformed JSON, an unknown label)
raises LLMFailure, and the calling node lets the rulebook engine answer and records the fallback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agent.canonical import canonicalise
from agent.no_action import NoActionAssessment
from agent.rulebook import Rulebook
from agent.schemas import UNKNOWN, Classification, Evidence, Incident
from prompts import render


class LLMFailure(RuntimeError):
    """The LLM could not give a usable answer; `kind` is timeout, api_error, truncated or invalid_output. `usage`
    is what the attempt cost: an answer that failed validation was still paid for."""

    def __init__(self, kind: str, detail: str, usage: Usage | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.usage = usage or Usage(calls=1)


class LLMClassification(BaseModel):
    category: Literal["A1", "A2", "A3", "A4", "unknown"]
    subcategory: str
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = ""
    evidence: list[str] = Field(default_factory=list)


class LLMAnswer(BaseModel):
    answer: str = Field(min_length=1, max_length=4000)


class LLMIntent(BaseModel):
    intent: Literal["new_incident", "question"]


class LLMPlanChoice(BaseModel):
    mitigation: Literal["M1", "M2", "M3", "M4", "M5", "M6"]
    rationale: str = ""
    no_action_evidence: list[str] = Field(default_factory=list)


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def rulebook_table(rulebook: Rulebook) -> str:
    """The taxonomy as the prompts show it, from rulebook.yaml (never written into a prompt by hand)."""
    lines = []
    for cat_id, cat in rulebook.categories.items():
        lines.append(f"- {cat_id} {cat['name']}: {cat['summary']}")
        for sub in rulebook.subcategories.values():
            if sub.category == cat_id:
                lines.append(f"  - {sub.id}: {sub.description}")
    return "\n".join(lines)


def playbook_table(rulebook: Rulebook) -> str:
    """The actions and Algorithm 1's playbook per subcategory, from rulebook.yaml."""
    lines = [f"- {action}: {text}" for action, text in rulebook.actions.items()]
    lines.append("Playbook (first effective action per subcategory; alternatives need their own evidence):")
    for sub in rulebook.subcategories.values():
        alternatives = ", ".join(
            dict.fromkeys(f"{a.action} ({a.operation.replace('_', ' ')})" for a in sub.plan.alternatives)
        )
        lines.append(
            f"- {sub.category}/{sub.id}: {sub.plan.default} ({sub.plan.operation.replace('_', ' ')})"
            + (f"; alternatives: {alternatives}" if alternatives else "")
        )
    return "\n".join(lines)


def untrusted_block(data: dict[str, Any]) -> str:
    """Incident data as JSON in which no `<` or `>` survives literally, so text inside it can never
    close the <incident> block it is quoted in (JSON's \\u003c escape keeps it readable to a model)."""
    text = json.dumps(data, indent=1, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def incident_block(incident: Incident) -> str:
    return untrusted_block(incident.model_dump(mode="json", exclude_none=True))


def _refuses_json_schema(exc: Exception) -> bool:
    """An endpoint's refusal of `response_format: json_schema` (a 4xx, or llama-cpp-python's 500 with a
    validation error naming the field), as opposed to any other failure."""
    text = str(exc)
    return "response_format" in text and "json_schema" in text and getattr(exc, "status_code", 0) in (400, 422, 500)


@dataclass(frozen=True)
class CallLimits:
    """Bounds of every call: `deadline_s` covers all attempts together (retries included), and the
    answer is cut at `max_tokens` by the server, so a runaway generation costs a bounded amount."""

    deadline_s: float = 30.0
    max_retries: int = 1
    max_tokens: int = 800


_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LLMEngine:
    def __init__(self, client: Any, model: str, rulebook: Rulebook, limits: CallLimits | None = None) -> None:
        # The client must not retry on its own (max_retries=0): every HTTP request is made, counted and
        # timed here, against one deadline per call.
        self._client = client
        self.model = model
        self._rulebook = rulebook
        self.limits = limits or CallLimits()
        # OpenAI's structured outputs first; servers that refuse them (llama-cpp-python's server) get
        # JSON mode with the schema, which they turn into a grammar. Either way the answer is validated.
        self._json_schema = True

    def _response_format(self, schema_name: str, schema: type[BaseModel]) -> dict[str, Any]:
        if self._json_schema:
            return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema.model_json_schema()}}
        return {"type": "json_object", "schema": schema.model_json_schema()}

    def _request(
        self,
        messages: list[dict[str, Any]],
        usage: Usage,
        schema: tuple[str, type[BaseModel]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        deadline_s: float | None = None,
    ) -> Any:
        """One answer within the call's deadline: each HTTP request counts as a call, and retries of
        timeouts, connection errors and retryable statuses stop when attempts or time run out."""
        import openai

        limit = self.limits.deadline_s if deadline_s is None else min(deadline_s, self.limits.deadline_s)
        deadline = time.monotonic() + limit
        failures = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMFailure("timeout", f"no answer within the call's {limit:g} s deadline", usage)
            usage.calls += 1
            extra: dict[str, Any] = {}
            if schema is not None:
                extra["response_format"] = self._response_format(*schema)
            if tools:
                extra["tools"] = tools
            try:
                return self._client.with_options(timeout=remaining, max_retries=0).chat.completions.create(
                    model=self.model,
                    temperature=0,
                    max_tokens=self.limits.max_tokens,
                    messages=messages,
                    **extra,
                )
            except openai.APIStatusError as exc:
                if schema is not None and self._json_schema and _refuses_json_schema(exc):
                    self._json_schema = False  # this endpoint never will: ask it for JSON the other way
                    continue
                failures += 1
                if exc.status_code not in _RETRYABLE_STATUS or failures > self.limits.max_retries:
                    raise LLMFailure("api_error", f"{type(exc).__name__}: {exc}", usage) from exc
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                failures += 1
                if failures > self.limits.max_retries or time.monotonic() >= deadline:
                    kind = "timeout" if isinstance(exc, openai.APITimeoutError) else "api_error"
                    raise LLMFailure(kind, f"{type(exc).__name__}: {exc}", usage) from exc
            except openai.APIError as exc:
                raise LLMFailure("api_error", f"{type(exc).__name__}: {exc}", usage) from exc

    def chat_with_tools(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], deadline_s: float | None = None
    ) -> tuple[Any, Usage]:
        """One turn of a tool-calling conversation (agent/explore): the assistant message, which may
        carry `tool_calls`, and what it cost. Failures raise LLMFailure like every other call."""
        usage = Usage()
        response = self._request(messages, usage, tools=tools, deadline_s=deadline_s)
        if response.usage is not None:
            usage.prompt_tokens = response.usage.prompt_tokens or 0
            usage.completion_tokens = response.usage.completion_tokens or 0
        if not response.choices:
            raise LLMFailure("invalid_output", "no choices in the answer", usage)
        return response.choices[0], usage

    def _complete(self, prompt: str, schema_name: str, schema: type[BaseModel]) -> tuple[BaseModel, Usage]:
        usage = Usage()
        response = self._request([{"role": "user", "content": prompt}], usage, (schema_name, schema))
        if response.usage is not None:
            usage.prompt_tokens = response.usage.prompt_tokens or 0
            usage.completion_tokens = response.usage.completion_tokens or 0
        if not response.choices or not response.choices[0].message.content:
            raise LLMFailure("invalid_output", "empty answer", usage)
        if response.choices[0].finish_reason == "length":
            raise LLMFailure("truncated", f"the answer reached max_tokens ({self.limits.max_tokens}) unfinished", usage)
        content = response.choices[0].message.content
        try:
            return schema.model_validate_json(content), usage
        except ValidationError as exc:
            detail = f"answer does not match {schema_name}: {exc.errors()[:3]}"
            raise LLMFailure("invalid_output", detail, usage) from exc

    def classify(
        self,
        incident: Incident,
        precedents: list[dict[str, Any]],
        model_answer: Classification | None = None,
        assessment: NoActionAssessment | None = None,
        findings: list[dict[str, Any]] | None = None,
    ) -> tuple[Classification, Usage]:
        """Everything the LLM is shown about the incident sits in one escaped data block: the incident,
        the canonical signals, the rulebook's evidence, the calibrated model's reading, precedents and
        what investigation found (read from systems incident text can reach: data, like the rest)."""
        data: dict[str, Any] = {"incident": incident.model_dump(mode="json", exclude_none=True)}
        data["canonical_signals"] = canonicalise(incident.signals).signals
        if model_answer is not None:
            data["rulebook_evidence"] = [e.detail for e in model_answer.evidence if e.source != "model"][:20]
            data["calibrated_model"] = {
                "best_guess": f"{model_answer.category}/{model_answer.subcategory}",
                "probabilities": model_answer.probabilities,
            }
        if assessment is not None:
            data["no_action_evidence"] = assessment.as_dict()
        data["precedents"] = [
            {k: p.get(k) for k in ("id", "title", "category", "subcategory", "mitigation")} for p in precedents
        ]
        if findings:
            data["investigation_findings"] = [
                {"kind": f.get("kind"), "summary": f.get("summary"), "source": f.get("source")} for f in findings[:30]
            ]
        prompt = render(
            "classify",
            rulebook_version=self._rulebook.version,
            rulebook_table=rulebook_table(self._rulebook),
            incident=untrusted_block(data),
        )
        answer, usage = self._complete(prompt, "classification", LLMClassification)
        assert isinstance(answer, LLMClassification)
        sub = self._rulebook.subcategories.get(answer.subcategory)
        if answer.category == UNKNOWN or answer.subcategory == UNKNOWN:
            category, subcategory = UNKNOWN, UNKNOWN
        elif sub is None or sub.category != answer.category:
            raise LLMFailure("invalid_output", f"{answer.category}/{answer.subcategory} is not in the rulebook", usage)
        else:
            category, subcategory = answer.category, answer.subcategory
        return (
            Classification(
                category=category,  # type: ignore[arg-type]
                subcategory=subcategory,
                confidence=answer.confidence,
                engine="llm",
                rationale=answer.rationale,
                evidence=[Evidence(source="llm", detail=e[:300]) for e in answer.evidence[:10]],
            ),
            usage,
        )

    def plan(
        self, incident: Incident, classification: Classification, no_action: dict[str, Any] | None = None
    ) -> tuple[LLMPlanChoice, Usage]:
        data = {
            "incident": incident.model_dump(mode="json", exclude_none=True),
            "no_action_assessment": {k: (no_action or {}).get(k) for k in ("evidence", "vetoes", "why")},
        }
        prompt = render(
            "plan",
            category=classification.category,
            subcategory=classification.subcategory,
            playbook=playbook_table(self._rulebook),
            incident=untrusted_block(data),
        )
        answer, usage = self._complete(prompt, "plan", LLMPlanChoice)
        assert isinstance(answer, LLMPlanChoice)
        return answer, usage

    def answer(self, question: str, record: dict[str, Any]) -> tuple[str, Usage]:
        """A follow-up question about a triaged incident, answered from its record only."""
        keep = (
            "incident_id",
            "status",
            "category",
            "subcategory",
            "confidence",
            "evidence",
            "precedents",
            "plan",
            "guard",
            "actions",
            "verification",
            "escalation",
            "notes",
        )
        prompt = render(
            "followup",
            record=untrusted_block({k: record.get(k) for k in keep})[:20_000],
            question=untrusted_block({"question": question[:2000]}),
        )
        reply, usage = self._complete(prompt, "answer", LLMAnswer)
        assert isinstance(reply, LLMAnswer)
        return reply.answer, usage

    def intent(self, message: str) -> tuple[str, Usage]:
        """Whether a chat message reports a problem now or asks about history (agent/intents.py)."""
        prompt = render("intent", message=untrusted_block({"message": message[:4000]}))
        routed, usage = self._complete(prompt, "intent", LLMIntent)
        assert isinstance(routed, LLMIntent)
        return routed.intent, usage

    def ask(self, question: str, matches: dict[str, Any]) -> tuple[str, Usage]:
        """A question about history, answered from the incidents and postmortems retrieval found."""
        prompt = render(
            "ask",
            matches=untrusted_block(matches)[:20_000],
            question=untrusted_block({"question": question[:4000]}),
        )
        reply, usage = self._complete(prompt, "answer", LLMAnswer)
        assert isinstance(reply, LLMAnswer)
        return reply.answer, usage
