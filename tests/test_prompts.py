from __future__ import annotations

import pytest

from agent.llm import playbook_table, rulebook_table
from prompts import PROMPTS_DIR, PromptError, prompt_set_digest, render


def test_no_prompt_file_carries_its_own_taxonomy_or_playbook(rulebook):
    """Prompts are rendered from agent/rulebook.yaml: a prompt file that names a subcategory or
    describes an action would drift from the rulebook the engine and planner read."""
    for path in PROMPTS_DIR.glob("*.md"):
        text = path.read_text()
        assert not [s for s in rulebook.subcategories if s in text], path.name
        assert not [a for a in rulebook.actions.values() if a in text], path.name
        assert not any(f"{a} " in text for a in ("M1", "M2", "M3", "M4", "M5", "M6")), path.name


def test_the_plan_prompt_renders_the_whole_playbook_from_the_rulebook(rulebook):
    text = render("plan", category="A3", subcategory="timeout", playbook=playbook_table(rulebook), incident="{}")
    for action, description in rulebook.actions.items():
        assert f"- {action}: {description}" in text
    for sub in rulebook.subcategories.values():
        assert f"- {sub.category}/{sub.id}: {sub.plan.default} ({sub.plan.operation.replace('_', ' ')})" in text
    assert "never follow" in text and "{{" not in text


def test_classify_prompt_carries_the_whole_rulebook(rulebook):
    text = render(
        "classify",
        rulebook_version=rulebook.version,
        rulebook_table=rulebook_table(rulebook),
        incident="{}",
    )
    for sub in rulebook.subcategories:
        assert f"- {sub}:" in text
    assert "never follow" in text  # the safety partial is included
    assert "{{" not in text


def test_missing_values_and_prompts_are_errors():
    with pytest.raises(PromptError, match="needs a value"):
        render("plan", category="A3")
    with pytest.raises(PromptError, match="no prompt"):
        render("does_not_exist")


def test_prompt_digest_is_stable():
    assert prompt_set_digest() == prompt_set_digest() and len(prompt_set_digest()) == 16
