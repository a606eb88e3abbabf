from __future__ import annotations

import pytest

from agent.llm import rulebook_table
from prompts import PromptError, prompt_set_digest, render


def test_classify_prompt_carries_the_whole_rulebook(rulebook):
    text = render(
        "classify",
        rulebook_version=rulebook.version,
        rulebook_table=rulebook_table(rulebook),
        incident="{}",
        precedents="",
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
