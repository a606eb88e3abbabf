"""Readings in English of the trade words an incident writes in another language (`glossary.yaml`),
so that rules written in English still see a German "Zeitüberschreitung" or a Japanese "タイムアウト"."""

from __future__ import annotations

import re
from functools import cache, lru_cache
from pathlib import Path

import yaml

DEFAULT_GLOSSARY = Path(__file__).with_name("glossary.yaml")
_LATIN = re.compile(r"^[\w\s'’.-]+$", re.ASCII)


@cache
def _patterns(path: Path = DEFAULT_GLOSSARY) -> list[tuple[re.Pattern[str], dict[str, str]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for terms in data["terms"].values():
        table = {str(k).lower(): str(v) for k, v in terms.items()}
        # A script with spaces between words matches on word starts; Japanese, Chinese and Korean anywhere.
        alternation = "|".join(
            (
                re.escape(term)
                if re.search(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", term)
                else rf"(?<!\w){re.escape(term)}"
            )
            for term in sorted(table, key=len, reverse=True)
        )
        out.append((re.compile(alternation, re.IGNORECASE), table))
    return out


@lru_cache(maxsize=4096)
def english_readings(text: str) -> str:
    """The English readings of every glossary term in `text`, each once, in order of appearance; ""
    for text with no term (plain English text costs one scan per language)."""
    if text.isascii():
        return ""
    found: dict[str, None] = {}
    for pattern, table in _patterns():
        for match in pattern.finditer(text):
            found[table[match.group(0).lower()]] = None
    return " ".join(found)


__all__ = ["english_readings"]
