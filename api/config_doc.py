"""The README's configuration table, generated from the Settings class (a test keeps them in step).

`python -m api.config_doc` prints it; `python -m api.config_doc --write` replaces the table between
the README's `settings-table` markers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from api.settings import OTHER_VARIABLES, Settings, env_name

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
_SHOWN_DEFAULTS = {"state_dir": "see meaning", "database_url": "see meaning", "datasets_dir": "`evals/datasets`"}


def _default(name: str, field: FieldInfo) -> str:
    if name in _SHOWN_DEFAULTS:
        return _SHOWN_DEFAULTS[name]
    value: Any = field.get_default(call_default_factory=False)
    if value is None or (hasattr(value, "get_secret_value") and not value.get_secret_value()) or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(name)}` | {_default(name, field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def other_variables() -> str:
    rows = ["| variable | read by |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in OTHER_VARIABLES.items()]
    return "\n".join(rows) + "\n"


def section() -> str:
    return f"{START}\n{table()}\nOther `MITIGATE_*` variables, read outside the settings:\n\n{other_variables()}{END}"


def readme_section(text: str) -> str:
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str]) -> int:
    if "--write" in argv:
        text = README.read_text(encoding="utf-8")
        README.write_text(text.replace(readme_section(text), section()), encoding="utf-8")
        return 0
    print(section())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
