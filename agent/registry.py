"""Component registry: one ``type:`` name per component kind, each with its pydantic config.

Components register with :func:`register`; the config loader builds a discriminated union per
kind from what is registered, so adding a source, decoder, detector or sink never touches the
core. Registering the same ``type`` twice is an error at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

Kind = Literal["source", "decoder", "detector", "sink"]

_REGISTRY: dict[str, dict[str, tuple[type[BaseModel], Any]]] = {
    "source": {},
    "decoder": {},
    "detector": {},
    "sink": {},
}


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T")


def register(kind: Kind, type_name: str, config: type[BaseModel]) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        table = _REGISTRY[kind]
        if type_name in table:
            raise RuntimeError(f"duplicate {kind} type {type_name!r}")
        table[type_name] = (config, cls)
        return cls

    return deco


def components(kind: Kind) -> dict[str, tuple[type[BaseModel], Any]]:
    load_builtin()
    return _REGISTRY[kind]


def build(kind: Kind, cfg: BaseModel, **kwargs: Any) -> Any:
    type_name = cfg.type  # type: ignore[attr-defined]
    _config, cls = components(kind)[type_name]
    return cls(cfg, **kwargs)


_loaded = False


def load_builtin() -> None:
    """Import the built-in components so that they register themselves."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import agent.decoders.bedrock  # noqa: F401
    import agent.decoders.billing  # noqa: F401
    import agent.decoders.dcgm  # noqa: F401
    import agent.decoders.generic_json  # noqa: F401
    import agent.sources.exports  # noqa: F401
    import agent.sources.file  # noqa: F401
    import agent.sources.kafka  # noqa: F401
    import detectors.budget  # noqa: F401
    import detectors.seasonal  # noqa: F401
    import detectors.threshold  # noqa: F401
    import sinks.console  # noqa: F401
    import sinks.jsonl  # noqa: F401
    import sinks.prometheus  # noqa: F401
    import sinks.webhook  # noqa: F401
