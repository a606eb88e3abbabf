"""The LLM path: classification and planning through any OpenAI-compatible endpoint.

Every answer must be structured output that validates against a pydantic model and against the
rulebook's vocabulary; anything else (timeout, HTTP error, refusal, malformed JSON, an unknown label)
raises LLMFailure, and the calling node lets the rulebook engine answer and records the fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agent.rulebook import Rulebook
from agent.schemas import UNKNOWN, Classification, Evidence, Incident
from prompts import render


class LLMFailure(RuntimeError):
    """The LLM could not give a usable answer; `kind` is timeout, api_error or invalid_output. `usage`
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
    lines = []
    for cat_id, cat in rulebook.categories.items():
        lines.append(f"- {cat_id} {cat['name']}: {cat['summary']}")
        for sub in rulebook.subcategories.values():
            if sub.category == cat_id:
                lines.append(f"  - {sub.id}: {sub.description}")
    return "\n".join(lines)


def incident_block(incident: Incident) -> str:
    data = incident.model_dump(mode="json", exclude_none=True)
    return json.dumps(data, indent=1, ensure_ascii=False)


def _refuses_json_schema(exc: Exception) -> bool:
    """An endpoint's refusal of `response_format: json_schema` (a 4xx, or llama-cpp-python's 500 with a
    validation error naming the field), as opposed to any other failure."""
    text = str(exc)
    return "response_format" in text and "json_schema" in text and getattr(exc, "status_code", 0) in (400, 422, 500)


class LLMEngine:
    def __init__(self, client: Any, model: str, rulebook: Rulebook) -> None:
        self._client = client
        self.model = model
        self._rulebook = rulebook
        # OpenAI's structured outputs first; servers that refuse them (llama-cpp-python's server) get
        # JSON mode with the schema, which they turn into a grammar. Either way the answer is validated.
        self._json_schema = True

    def _response_format(self, schema_name: str, schema: type[BaseModel]) -> dict[str, Any]:
        if self._json_schema:
            return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema.model_json_schema()}}
        return {"type": "json_object", "schema": schema.model_json_schema()}

    def _complete(self, prompt: str, schema_name: str, schema: type[BaseModel]) -> tuple[BaseModel, Usage]:
        import openai

        calls = 0
        while True:
            calls += 1
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    temperature=0,
                    messages=[{"role": "user", "content": prompt}],
                    response_format=self._response_format(schema_name, schema),
                )
                break
            except openai.APITimeoutError as exc:
                raise LLMFailure("timeout", str(exc), Usage(calls=calls)) from exc
            except openai.APIStatusError as exc:
                if self._json_schema and _refuses_json_schema(exc):
                    self._json_schema = False  # this endpoint never will: ask it for JSON the other way
                    continue
                raise LLMFailure("api_error", f"{type(exc).__name__}: {exc}", Usage(calls=calls)) from exc
            except openai.APIError as exc:
                raise LLMFailure("api_error", f"{type(exc).__name__}: {exc}", Usage(calls=calls)) from exc
        usage = Usage(calls=calls)
        if response.usage is not None:
            usage.prompt_tokens = response.usage.prompt_tokens or 0
            usage.completion_tokens = response.usage.completion_tokens or 0
        if not response.choices or not response.choices[0].message.content:
            raise LLMFailure("invalid_output", "empty answer", usage)
        content = response.choices[0].message.content
        try:
            return schema.model_validate_json(content), usage
        except ValidationError as exc:
            detail = f"answer does not match {schema_name}: {exc.errors()[:3]}"
            raise LLMFailure("invalid_output", detail, usage) from exc

    def classify(self, incident: Incident, precedents: list[dict[str, Any]]) -> tuple[Classification, Usage]:
        cited = ""
        if precedents:
            cited = "Similar past incidents (their labels are hints, not answers):\n" + "\n".join(
                f"- {p.get('id')}: {p.get('title')} -> {p.get('category')}/{p.get('subcategory')}, fixed by "
                f"{p.get('mitigation')}"
                for p in precedents
            )
        prompt = render(
            "classify",
            rulebook_version=self._rulebook.version,
            rulebook_table=rulebook_table(self._rulebook),
            incident=incident_block(incident),
            precedents=cited,
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

    def plan(self, incident: Incident, classification: Classification) -> tuple[LLMPlanChoice, Usage]:
        prompt = render(
            "plan",
            category=classification.category,
            subcategory=classification.subcategory,
            incident=incident_block(incident),
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
            record=json.dumps({k: record.get(k) for k in keep}, indent=1, default=str)[:20_000],
            question=question[:2000],
        )
        reply, usage = self._complete(prompt, "answer", LLMAnswer)
        assert isinstance(reply, LLMAnswer)
        return reply.answer, usage
