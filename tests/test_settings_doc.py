"""Settings: the README's table is generated from the Settings class and agrees with it; wrong values
name their variable; typos of MITIGATE_* names are warned about; state lives in one directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from api.config_doc import README, readme_section, section
from api.progress import Progress
from api.settings import Settings, SettingsError, load_settings, unknown_variables


def test_the_readme_configuration_table_is_the_settings_class():
    # After adding a setting: python -m api.config_doc --write
    assert readme_section(README.read_text(encoding="utf-8")) == section()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description for the README"
    for variable in ("MITIGATE_API_TOKEN", "MITIGATE_INCIDENT_WEBHOOK_SECRET", "MITIGATE_PAGERDUTY_WEBHOOK_SECRET"):
        assert f"| `{variable}` |" in section()


def test_a_wrong_value_names_the_variable_and_never_repeats_a_secret():
    with pytest.raises(SettingsError, match=r"MITIGATE_SLA_TARGET='high': Input should be a valid number"):
        load_settings(sla_target="high")
    with pytest.raises(SettingsError) as raised:
        load_settings(max_body_bytes=-1, llm_api_key=SecretLike())
    assert "MITIGATE_MAX_BODY_BYTES=-1" in str(raised.value) and "sk-secret" not in str(raised.value)


class SecretLike:
    """Not a string: an invalid secret whose value must not appear in the message."""

    def __repr__(self) -> str:
        return "sk-secret"


def test_typos_of_variables_are_found_with_the_closest_name():
    found = unknown_variables({"MITIGATE_SLA_TARGT": "0.9", "MITIGATE_APPROVER_TOKEN": "t", "PATH": "/bin"})
    assert found == [
        "MITIGATE_SLA_TARGT is not a mitigate setting (did you mean MITIGATE_SLA_TARGET?); it is ignored "
        "(README.md#configuration)"
    ]
    assert unknown_variables({"MITIGATE_SOMETHING_ELSE_ENTIRELY": "1"})[0].endswith("ignored (README.md#configuration)")


def test_state_lives_in_one_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.state_dir == tmp_path / "xdg" / "mitigate"
    assert settings.database_url == f"sqlite:///{tmp_path / 'xdg' / 'mitigate' / 'mitigate.db'}"
    monkeypatch.setenv("MITIGATE_STATE_DIR", str(tmp_path / "mine"))
    assert Settings().state_dir == tmp_path / "mine"
    monkeypatch.setenv("MITIGATE_STATE_DIR", "relative")
    assert Settings().state_dir == Path(tmp_path / "relative")  # made absolute where it was read


def test_progress_writes_plain_lines_when_not_on_a_terminal():
    out = io.StringIO()
    with Progress("ingesting", total=40, stream=out, terminal=False, every_s=3600) as progress:
        for done in range(1, 41):
            progress.update(done)
    lines = out.getvalue().splitlines()
    assert (
        len(lines) == 10 and lines[0].startswith("ingesting: 4/40 (10%)") and lines[-1].startswith("ingesting: 40/40")
    )
