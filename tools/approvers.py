"""Who may approve what: the people, their identities on each way in, and their roles (policy as data).

An approval is only ever accepted from a person in this registry, identified by something a door
authenticated: a per-person API token (REST, dashboard, CLI; stored as a SHA-256 hash, compared in
constant time), a Slack user id from a signed request, a Teams AAD object id from a validated JWT.
Roles map to the risk tiers their holders may approve. The file is a secret of the deployment
(MITIGATE_APPROVERS_FILE); tokens themselves are never stored, logged or shown.

    roles:
      sre: [low, medium, high]
      sre-lead: [low, medium, high, critical]
    people:
      alice:
        roles: [sre-lead]
        token_sha256: 3a7bd3e2...   # `mitigate approvers token` makes a token and its hash
        slack: U0ALICE
        teams: 6a1f...-aad-object-id
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RISK_TIERS = ("none", "low", "medium", "high", "critical")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PERSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


class ApproversError(ValueError):
    """The approvers file is not usable; the message says where (never a token)."""


@dataclass(frozen=True)
class Person:
    id: str
    roles: frozenset[str]
    tiers: frozenset[str]
    token_sha256: str = ""
    slack: str = ""
    teams: str = ""

    def may_approve(self, risk: str) -> bool:
        return risk in self.tiers


@dataclass(frozen=True)
class Approvers:
    people: dict[str, Person] = field(default_factory=dict)

    def get(self, person_id: str) -> Person | None:
        return self.people.get(person_id)

    def by_token(self, token: str) -> Person | None:
        """The person whose token this is. Every stored hash is compared (in constant time), so the time
        taken does not tell how close a guess came or which person it matched."""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found: Person | None = None
        for person in self.people.values():
            if person.token_sha256 and hmac.compare_digest(digest, person.token_sha256.encode()):
                found = person
        return found

    def by_slack(self, user_id: str) -> Person | None:
        return next((p for p in self.people.values() if p.slack and p.slack == user_id), None)

    def by_teams(self, aad_object_id: str) -> Person | None:
        return next((p for p in self.people.values() if p.teams and p.teams == aad_object_id), None)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_approvers(text: str) -> Approvers:
    try:
        data: dict[str, Any] = yaml.safe_load(text) or {}
        roles = {str(name): frozenset(str(t) for t in tiers) for name, tiers in (data.get("roles") or {}).items()}
        for name, tiers in roles.items():
            if unknown := tiers - set(RISK_TIERS):
                raise ApproversError(f"role {name}: unknown risk tiers {sorted(unknown)} (use {', '.join(RISK_TIERS)})")
        people: dict[str, Person] = {}
        for pid, raw in (data.get("people") or {}).items():
            pid = str(pid)
            if not _PERSON_ID.match(pid):
                raise ApproversError(f"person id {pid!r} is not a plain name")
            held = frozenset(str(r) for r in raw.get("roles") or [])
            if missing := held - set(roles):
                raise ApproversError(f"person {pid}: undefined roles {sorted(missing)}")
            digest = str(raw.get("token_sha256") or "").lower()
            if digest and not _HEX64.match(digest):
                raise ApproversError(f"person {pid}: token_sha256 must be 64 hex digits (a SHA-256 of the token)")
            people[pid] = Person(
                id=pid,
                roles=held,
                tiers=frozenset().union(*(roles[r] for r in held)) if held else frozenset(),
                token_sha256=digest,
                slack=str(raw.get("slack") or ""),
                teams=str(raw.get("teams") or ""),
            )
    except (AttributeError, TypeError, yaml.YAMLError) as exc:
        raise ApproversError(f"approvers file is not usable: {type(exc).__name__}") from exc
    for via in ("slack", "teams", "token_sha256"):
        seen: dict[str, str] = {}
        for person in people.values():
            value = getattr(person, via)
            if value and value in seen:
                raise ApproversError(f"{via} identity is shared by {seen[value]} and {person.id}: one person each")
            if value:
                seen[value] = person.id
    return Approvers(people)


def load_approvers(path: Path | None) -> Approvers:
    """The registry from a file; no file configured means nobody can approve (fail closed)."""
    if path is None:
        return Approvers()
    return parse_approvers(Path(path).read_text(encoding="utf-8"))
