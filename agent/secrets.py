"""Secrets named by the config, read at start (never at load, never logged): a ``SecretStr`` value or a ``*_file``
path (a mounted Kubernetes secret); and the error of a component that cannot start because of what its config
names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Options naming a file that holds a secret (read at start; a URL file too: a webhook URL carries its token).
SECRET_FILES = frozenset(
    {
        "admin_key_file",
        "api_token_file",
        "bearer_token_file",
        "connection_string_file",
        "routing_key_file",
        "sas_token_file",
        "sasl_password_file",
        "secret_file",
        "url_file",
    }
)


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


def _named_files(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(option path, file) of every secret file the config names, depth first."""
    from pydantic import BaseModel

    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            value = getattr(node, name, None)
            where = f"{path}.{name}" if path else name
            if name in SECRET_FILES and isinstance(value, str) and value:
                yield where, value
            else:
                yield from _named_files(value, where)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _named_files(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _named_files(value, f"{path}.{i}")


def check_secret_files(cfg: Any) -> list[str]:
    """Every secret file the config names that cannot be read or is empty, as ``path: message`` (what
    :func:`read_secret` would raise for each), so that ``run`` reports all of them at once, before it starts
    anything. The secrets themselves are read and forgotten here."""
    errors = []
    for where, file in _named_files(cfg, ""):
        try:
            read_secret(None, file, where)
        except StartupError as exc:
            errors.append(str(exc))
    return errors
