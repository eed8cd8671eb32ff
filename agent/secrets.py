"""Secrets named by the config, read at start (never at load, never logged): a ``SecretStr`` value or a ``*_file``
path (a mounted Kubernetes secret); and the error of a component that cannot start because of what its config
names."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class StartupError(Exception):
    """A component cannot start because of its configuration or what it names (a secret file that is
    missing, unreadable or empty): ``finops-agent run`` prints ``path: message`` and exits 2, like
    :class:`ConfigError`, without a traceback."""


def read_secret(value: Any, file: str | None, where: str = "") -> str | None:
    """Return a secret from a ``SecretStr`` value or a ``*_file`` path (read at start, not at load).

    ``where`` is the option's path in the config (``sinks.oncall.secret_file``) for the error: a file
    that cannot be read, or holds nothing, raises :class:`StartupError` (never the secret itself)."""
    if value is not None:
        return str(value.get_secret_value())
    if file:
        try:
            secret = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise StartupError(f"{where or 'secret file'}: cannot read {file}: {why}") from None
        if not secret:
            raise StartupError(f"{where or 'secret file'}: {file} is empty")
        return secret
    return None
