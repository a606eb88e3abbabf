"""What differs between two pod templates, per container: image, command line flags (`--max-num-seqs`),
env (values redacted when they look like tokens; `valueFrom` named, never read) and resources; and a
one-line description of such a diff for a finding's summary."""

from __future__ import annotations

from typing import Any

from tools.investigate.bounds import redact


def _flags(argv: list[str]) -> dict[str, str]:
    """Command line as {flag: value}: `--x=1`, `--x 1` and bare `--flag`; positionals by index."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = str(argv[i])
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            if not eq and i + 1 < len(argv) and not str(argv[i + 1]).startswith("-"):
                value, i = str(argv[i + 1]), i + 1
            out[name] = value
        else:
            out[f"arg[{i}]"] = arg
        i += 1
    return out


def _env(container: dict[str, Any]) -> dict[str, str]:
    out = {}
    for item in container.get("env") or []:
        if "value" in item:
            out[item["name"]] = redact(str(item["value"]))
        else:
            out[item["name"]] = "from " + ",".join(sorted((item.get("valueFrom") or {}).keys()))
    return out


def _resources(container: dict[str, Any]) -> dict[str, str]:
    res = container.get("resources") or {}
    return {f"{kind}.{k}": str(v) for kind in ("requests", "limits") for k, v in (res.get(kind) or {}).items()}


def template_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between two pod templates, per container: image, args, env, resources."""
    olds = {c["name"]: c for c in (old.get("spec") or {}).get("containers") or []}
    news = {c["name"]: c for c in (new.get("spec") or {}).get("containers") or []}
    changes: list[dict[str, Any]] = []
    for name in sorted(set(olds) | set(news)):
        before, after = olds.get(name), news.get(name)
        if before is None or after is None:
            changes.append({"container": name, "field": "container", "from": bool(before), "to": bool(after)})
            continue
        pairs: list[tuple[str, dict[str, str], dict[str, str]]] = [
            ("image", {"": str(before.get("image"))}, {"": str(after.get("image"))}),
            (
                "args",
                _flags([*before.get("command", []), *before.get("args", [])]),
                _flags([*after.get("command", []), *after.get("args", [])]),
            ),
            ("env", _env(before), _env(after)),
            ("resources", _resources(before), _resources(after)),
        ]
        for field, was, now in pairs:
            for key in sorted(set(was) | set(now)):
                if was.get(key) != now.get(key):
                    label = f"{field} {key}".strip()
                    changes.append({"container": name, "field": label, "from": was.get(key), "to": now.get(key)})
    return changes


def _shown(value: Any) -> str:
    return "(none)" if value in (None, "") else str(value)


def describe(changes: list[dict[str, Any]], limit: int = 3) -> str:
    parts = [f"{c['field']} {_shown(c['from'])} → {_shown(c['to'])}" for c in changes[:limit]]
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(parts) + more
