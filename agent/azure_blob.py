"""Azure Blob Storage clients from the agent config: one set of options and one way to authenticate.

A connection string (or a file holding one), or an account URL with a SAS token (or a file), or an account URL
alone, authenticated with ``DefaultAzureCredential`` (workload identity in Kubernetes, a managed identity, ``az
login``). Used by the ``blob_export`` source and the Event Hubs source's checkpoint store.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from agent.secrets import read_secret


class BlobAuth(BaseModel):
    """Where a Blob container is and how to reach it (mixed into a component's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection_string: SecretStr | None = None
    connection_string_file: str | None = None
    account_url: str | None = Field(None, description="https://<account>.blob.core.windows.net")
    sas_token: SecretStr | None = None
    sas_token_file: str | None = None

    @model_validator(mode="after")
    def _auth(self) -> BlobAuth:
        has_cs = self.connection_string is not None or self.connection_string_file is not None
        if has_cs == (self.account_url is not None):
            raise ValueError("set connection_string (or connection_string_file) or account_url, not both")
        if self.connection_string is not None and self.connection_string_file is not None:
            raise ValueError("set connection_string or connection_string_file, not both")
        if (self.sas_token is not None or self.sas_token_file is not None) and self.account_url is None:
            raise ValueError("sas_token goes with account_url")
        if self.account_url is not None and not self.account_url.startswith(("https://", "http://")):
            raise ValueError(f"account_url: https://<account>.blob.core.windows.net, not {self.account_url!r}")
        return self


class BlobContainerConfig(BlobAuth):
    container: str = Field(min_length=3, max_length=63, description="the container's name")


def azure_credential() -> Any:
    """The standard Azure credential chain (workload identity, managed identity, environment, ``az login``)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("Azure identity needs azure-identity: pip install 'finops-agent[azure]'") from exc
    return DefaultAzureCredential()


def blob_connection(cfg: BlobAuth, where: str) -> tuple[str | None, str | None, Any]:
    """``(connection string, account url, credential)`` for ``cfg``: secrets read now (start, not load);
    ``where`` is the options' path in the config, for the error of an unreadable secret file."""
    cs = read_secret(cfg.connection_string, cfg.connection_string_file, f"{where}.connection_string_file")
    if cs is not None:
        return cs, None, None
    sas = read_secret(cfg.sas_token, cfg.sas_token_file, f"{where}.sas_token_file")
    return None, cfg.account_url, sas if sas is not None else azure_credential()


def blob_service(cfg: BlobAuth, where: str) -> Any:
    """A ``BlobServiceClient`` for ``cfg`` (no request made)."""
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("Azure Blob Storage needs azure-storage-blob: pip install 'finops-agent[azure]'") from exc
    cs, url, credential = blob_connection(cfg, where)
    if cs is not None:
        return BlobServiceClient.from_connection_string(cs)
    return BlobServiceClient(account_url=url or "", credential=credential)
