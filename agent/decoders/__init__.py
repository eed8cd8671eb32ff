"""Decoders: one module per input format. Importing this package registers the built-in ones."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from agent.decoders import bedrock, billing, dcgm, generic_json  # noqa: F401  (registration)
from agent.registry import _REGISTRY


def decoder_config_union() -> Any:
    models = tuple(cfg for cfg, _ in _REGISTRY["decoder"].values())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
