"""Component registry: one ``type:`` name per component kind, each with its pydantic config.

Components register with :func:`register`; the config loader builds a discriminated union per
kind from what is registered, so adding a source, decoder, detector or sink never touches the
core. Registering the same ``type`` twice is an error at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

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
_generation = 0  # bumped by every registration: models built from the registry are rebuilt after one


def generation() -> int:
    """How many components were registered so far (a cache key for what is built from the registry)."""
    return _generation


def register(kind: Kind, type_name: str, config: type[BaseModel]) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        table = _REGISTRY[kind]
        if type_name in table:
            raise RuntimeError(f"duplicate {kind} type {type_name!r}")
        table[type_name] = (config, cls)
        global _generation
        _generation += 1
        return cls

    return deco


def unregister(kind: Kind, type_name: str) -> None:
    """Remove a registered component (a test's, or a plugin being reloaded); unknown names are ignored."""
    if _REGISTRY[kind].pop(type_name, None) is not None:
        global _generation
        _generation += 1


@contextlib.contextmanager
def registered(kind: Kind, type_name: str, config: type[BaseModel], cls: Any) -> Iterator[None]:
    """``cls`` registered as ``type_name`` for the duration of a ``with`` block (tests of a toy component)."""
    components(kind)  # the built-ins first, so that the scan does not register them inside the block
    register(kind, type_name, config)(cls)
    try:
        yield
    finally:
        unregister(kind, type_name)


def components(kind: Kind) -> dict[str, tuple[type[BaseModel], Any]]:
    load_builtin()
    return _REGISTRY[kind]


def config_union(kind: Kind) -> Any:
    """The pydantic type of a ``type:``-discriminated config of ``kind``: every registered component's model."""
    models = tuple(cfg for cfg, _cls in components(kind).values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


def build(kind: Kind, cfg: BaseModel, **kwargs: Any) -> Any:
    type_name = cfg.type  # type: ignore[attr-defined]
    _config, cls = components(kind)[type_name]
    return cls(cfg, **kwargs)


_loaded = False


class PluginError(Exception):
    """A component module named by an entry point could not be imported."""


#: Packages whose modules are the built-in components (each registers itself with :func:`register` on import).
BUILTIN_PACKAGES = ("agent.sources", "agent.decoders", "detectors", "sinks")
#: Entry-point group for components shipped by other distributions: ``name = "package.module"``.
PLUGIN_GROUP = "finops_agent.components"


def builtin_modules() -> list[str]:
    """Every module of the built-in component packages (found by a scan, so the registry imports none by name)."""
    import importlib
    import pkgutil

    names: list[str] = []
    for pkg_name in BUILTIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.extend(m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}.") if "._" not in m.name)
    return sorted(names)


def load_builtin() -> None:
    """Import the built-in components and the plugins' (entry points in :data:`PLUGIN_GROUP`) once, so that
    they register themselves. Neither is imported by this module by name: no import cycle with the components."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    from importlib.metadata import entry_points

    for name in builtin_modules():
        importlib.import_module(name)
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            importlib.import_module(ep.value.partition(":")[0])
        except Exception as exc:
            raise PluginError(f"plugin {ep.name} = {ep.value!r} (entry points {PLUGIN_GROUP}): {exc}") from exc
