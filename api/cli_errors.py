"""Mistakes a person can make running `mitigate`, as one plain message each (exit 2), never a traceback:
a wrong setting, a database that does not answer, an unusable kubeconfig, no room for state."""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def masked_url(url: str) -> str:
    """A database URL with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # explaining an error must not raise another
        return "the configured database"


def _database_url() -> str:
    from api.settings import get_settings

    try:
        return masked_url(get_settings().database_url)
    except Exception:
        return "the configured database"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain(exc: BaseException) -> str | None:
    """The message for an error a person can fix, or None for a real bug (which keeps its traceback)."""
    from api.settings import SettingsError

    if isinstance(exc, SettingsError):
        return str(exc)
    module = type(exc).__module__
    name = type(exc).__name__
    if name == "OperationalError" and module.startswith(("sqlalchemy", "psycopg")):
        return (
            f"cannot reach the database at {_database_url()} (MITIGATE_DATABASE_URL): {_first_line(exc)}; "
            "nothing was stored (README.md#configuration)"
        )
    if isinstance(exc, PermissionError):
        return (
            f"no permission to write {exc.filename or 'the state directory'}: set MITIGATE_STATE_DIR to a "
            "directory you can write (README.md#configuration)"
        )
    return None


def run_command(func: Any, args: Any) -> int:
    """Run one command; known mistakes become a message and exit 2, a closed pipe ends quietly."""
    try:
        result: int = func(args)
        sys.stdout.flush()
        return result
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted: stop writing, say nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("mitigate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        return fail(message)
