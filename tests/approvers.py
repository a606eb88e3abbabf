"""The approvers of the test suite: people, roles, per-person tokens (only their hashes go into the
registry), Slack and Teams ids; and approval answers as the doors build them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tools.approvers import Approvers, parse_approvers, token_hash

TOKENS = {"alice": "alice-personal-token-1", "bob": "bob-personal-token-2", "carol": "carol-personal-token-3"}
TOKENS["dave"] = "dave-personal-token-4"  # a junior: may approve medium risk only
SLACK = {"alice": "UALICE", "bob": "UBOB", "dave": "UDAVE"}
TEAMS = {"alice": "aad-alice", "bob": "aad-bob", "dave": "aad-dave"}
ROLES = {"alice": ["sre-lead"], "bob": ["sre"], "carol": ["sre-lead"], "dave": ["junior"]}


def approvers_yaml() -> str:
    lines = [
        "roles:",
        "  junior: [low, medium]",
        "  sre: [low, medium, high]",
        "  sre-lead: [low, medium, high, critical]",
        "people:",
    ]
    for person, token in TOKENS.items():
        lines += [f"  {person}:", f"    roles: {ROLES[person]}", f"    token_sha256: {token_hash(token)}"]
        if person in SLACK:
            lines.append(f"    slack: {SLACK[person]}")
        if person in TEAMS:
            lines.append(f"    teams: {TEAMS[person]}")
    return "\n".join(lines) + "\n"


REGISTRY: Approvers = parse_approvers(approvers_yaml())


def approvers_file(directory: Path) -> Path:
    path = directory / "approvers.yaml"
    path.write_text(approvers_yaml())
    return path


def answer(person: str, approved: bool = True, reason: str = "", via: str = "test") -> dict[str, Any]:
    """A resume value as a door makes it after authenticating `person`."""
    return {
        "approved": approved,
        "reason": reason,
        "attempt_id": uuid.uuid4().hex,
        "identity": {"person": person, "via": via, "subject": person, "address": "test"},
    }
