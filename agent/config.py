"""Configuration: one YAML file, typed with pydantic, every error reported with its path.

Loading does no I/O beyond reading the file itself (and ``*_file`` secrets at start).
``${VAR}`` and ``${VAR:-default}`` are substituted from the environment before validation.
After the per-field validation, :func:`cross_check` checks what spans components, including that
each detector's signal and dimensions can come from a configured source (every decoder declares
what it emits: :meth:`agent.decoders.base.Decoder.emits`).
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agent import registry
from agent.blob_state import BlobStateConfig
from agent.registry import components, config_union
from agent.routing_config import RouteConfig, SilenceConfig, route_errors
from agent.secrets import StartupError, read_secret  # noqa: F401  (their home before; imported from here too)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ConfigError(Exception):
    """Raised with every problem found, one ``path: message`` per entry of ``errors``."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


GpuPurchaseOption = Literal["on_demand", "reserved", "spot"]  # reserved: 1-year commitment, no upfront


class GpuPriceRule(_Strict):
    """How the GPUs whose dimensions match are bought or priced (see :class:`agent.pricing.GpuPriceTable`)."""

    match: dict[str, list[str]] = Field(
        min_length=1,
        description="dimension → value or list of values (any of; * and ? wildcards), every key must hold: "
        "e.g. cluster, node, gpu_model, instance_type, namespace",
    )
    purchase_option: GpuPurchaseOption | None = Field(None, description="the bundled rate to use for these GPUs")
    usd_per_gpu_hour: float | None = Field(None, ge=0, description="the rate paid (no bundled rate, no discount)")
    discount_percent: float | None = Field(None, ge=0, lt=100, description="off the bundled rate at the option")

    @field_validator("match", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        if not v:
            raise ValueError("name at least one dimension (for every GPU, set pricing.gpu_purchase_option)")
        out: dict[Any, Any] = {}
        for k, vs in v.items():
            vs = vs if isinstance(vs, list) else [vs]
            if not vs or any(isinstance(x, dict | list) or x is None or str(x) == "" for x in vs):
                raise ValueError(f"{k}: a value or a non-empty list of values")
            out[k] = [str(x) for x in vs]  # (a YAML number or boolean is a label value as written)
        return out

    @model_validator(mode="after")
    def _decides(self) -> GpuPriceRule:
        if self.purchase_option is None and self.usd_per_gpu_hour is None and self.discount_percent is None:
            raise ValueError("set purchase_option, usd_per_gpu_hour or discount_percent")
        if self.usd_per_gpu_hour is not None and self.discount_percent is not None:
            raise ValueError("usd_per_gpu_hour is the rate paid: no discount_percent with it")
        return self


class TokenPriceConfig(_Strict):
    """A model's token prices in USD per 1M tokens (a typo such as ``imput`` is refused: it would price tokens at 0)."""

    input: float = Field(ge=0, description="USD per 1M uncached input tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M output tokens (0: an embedding model)")
    cached_input: float | None = Field(None, ge=0, description="USD per 1M cache reads (default: input)")
    cache_write_input: float | None = Field(None, ge=0, description="USD per 1M cache writes (default: input)")


class PricingConfig(_Strict):
    token_price_file: str | None = None
    token_prices: dict[str, TokenPriceConfig] = Field(default_factory=dict)
    gpu_hour_prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="GPU model → your effective USD per GPU-hour (beats the bundled table)"
    )
    gpu_hour_price_default: float | None = Field(None, ge=0, description="USD per GPU-hour of a GPU not priced")
    gpu_purchase_option: GpuPurchaseOption = Field("on_demand", description="the bundled rate GPUs are priced at")
    gpu_price_overrides: list[GpuPriceRule] = Field(
        default_factory=list, description="first matching rule wins, over gpu_hour_prices and the bundled table"
    )


class StateConfig(_Strict):
    type: Literal["local", "memory", "kafka", "blob"] = "local"
    directory: str = Field(".agent-state", description="local state; with type kafka or blob only the alert outbox")
    blob: BlobStateConfig | None = Field(
        None, description="type blob: the Azure Blob that holds the state, under a lease (one active replica)"
    )
    checkpoint_interval_seconds: float = Field(10.0, gt=0)
    topic_prefix: str | None = Field(
        None, description="type kafka: prefix of the internal topics (default: the first Kafka source's group_id)"
    )
    partitions: int = Field(
        6, ge=1, description="type kafka: partitions of the repartition and changelog topics (the unit of scale-out)"
    )
    replication_factor: int = Field(1, ge=1, description="type kafka: of the internal topics it creates")
    idle_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="type kafka: a caught-up input partition stops holding event time back while its owner "
        "says so at least this often; a crashed owner's partitions hold it back again after this long",
    )
    idle_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="a caught-up Kafka input partition holds event time back for this long after it went "
        "idle (Kafka Streams' max.task.idle.ms): records a producer delivers to it a moment later than to the other "
        "partitions (a producer that retries after an outage) are on time, not late",
    )

    @model_validator(mode="after")
    def _blob(self) -> StateConfig:
        if (self.type == "blob") != (self.blob is not None):
            raise ValueError("type blob and blob go together (blob: the container and the blob that hold the state)")
        return self


class PipelineConfig(_Strict):
    allowed_lateness_seconds: float = Field(300.0, ge=0)
    max_future_seconds: float = Field(86_400.0, ge=0)
    max_age_days: float = Field(400.0, ge=0, description="0 disables the wall-clock age check")
    queue_max_batches: int = Field(8, ge=1, description="batches (about 1 MB each) between sources and the pipeline")
    idle_timeout_seconds: float | None = Field(
        300.0,
        ge=0,
        description="when every stream has been idle (caught up) this long, live streams (watched files, Kafka) "
        "move on the wall clock to now minus this, at most the longest window (plus the lateness) past their last "
        "record: the last window of a source that goes quiet closes; a record older than that minus "
        "allowed_lateness_seconds is late. With state.type kafka, each input partition idle this long does the "
        "same. null: never",
    )
    source_gap_seconds: float | None = Field(
        None,
        ge=0,
        description="a live source (a followed file, Kafka) without any record for this long, and for twice its "
        "longest silence since the agent started, raises a data-gap alert naming it (finops_agent_source_silent); "
        "default: three times the longest detector window; 0: never",
    )
    early_check_seconds: float = Field(
        60.0,
        gt=0,
        description="how often (in event time) open windows are checked for early warnings (detectors' early_warning)",
    )


class DeadLetterConfig(_Strict):
    path: str = ".agent-state/dead-letter.jsonl"
    max_bytes: int = Field(256 * 1024 * 1024, gt=0)


class TelemetryConfig(_Strict):
    log_format: Literal["auto", "text", "json"] = Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise (a container's log collector)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class HttpConfig(_Strict):
    """The agent's own HTTP server: /healthz and /readyz, /metrics with a Prometheus sink (agent/server.py), and the
    API (/api/v1/silences) with a token."""

    enabled: bool = True
    listen_address: str | None = Field(
        None, description="default: a Prometheus sink's listen_address, else $FINOPS_HTTP_ADDRESS or 127.0.0.1"
    )
    port: int | None = Field(
        None, ge=0, le=65535, description="default: a Prometheus sink's port, else $FINOPS_HTTP_PORT or 9464"
    )
    api_token: SecretStr | None = Field(
        None, description="the bearer token of the API (/api/v1/...); without one, the API refuses every request"
    )
    api_token_file: str | None = Field(None, description="a file holding the API's bearer token (a mounted secret)")

    @model_validator(mode="after")
    def _one_token(self) -> HttpConfig:
        if self.api_token is not None and self.api_token_file:
            raise ValueError("set api_token or api_token_file, not both")
        if self.api_token is not None and len(self.api_token.get_secret_value().strip()) < 16:
            raise ValueError("api_token: at least 16 characters (it guards silences)")
        return self


class AlertingConfig(_Strict):
    resolve_after_points: int = Field(2, ge=1)
    for_points: int = Field(
        1,
        ge=1,
        description="an incident is pending until this many consecutive anomalous windows, then fires (Prometheus' "
        "for; a detector's own for_points wins)",
    )
    id_namespace: str = Field(
        "",
        description="mixed into every alert id (the receivers' dedup key): set one per deployment when several "
        "agents (staging and production, two clusters) page the same service with the same detector names",
    )
    severity_critical_usd: float = 1000.0
    severity_error_usd: float = 100.0


_MODEL_CACHE: dict[int, type[BaseModel]] = {}


def agent_config_model() -> type[BaseModel]:
    """The top-level config model, built from the registered components (again after a registration)."""
    components("sink")  # the built-ins and plugins first: then the registry's generation is the key
    key = registry.generation()
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    source_cfg = config_union("source")
    detector_cfg = config_union("detector")
    sink_cfg = config_union("sink")
    model = create_model(
        "AgentConfig",
        __config__=ConfigDict(extra="forbid", frozen=True),
        sources=(dict[str, source_cfg], Field(min_length=1)),  # type: ignore[valid-type]
        detectors=(dict[str, detector_cfg], Field(min_length=1)),  # type: ignore[valid-type]
        sinks=(dict[str, sink_cfg], Field(min_length=1)),  # type: ignore[valid-type]
        pricing=(PricingConfig, PricingConfig()),
        state=(StateConfig, StateConfig()),
        pipeline=(PipelineConfig, PipelineConfig()),
        dead_letter=(DeadLetterConfig, DeadLetterConfig()),
        telemetry=(TelemetryConfig, TelemetryConfig()),
        alerting=(AlertingConfig, AlertingConfig()),
        http=(HttpConfig, HttpConfig()),
        route=(RouteConfig | None, None),
        silences=(list[SilenceConfig], Field(default_factory=list)),
        __validators__={
            "names": field_validator("sources", "detectors", "sinks")(_check_names),
            "default_state": model_validator(mode="before")(_default_state),  # type: ignore[dict-item]
        },
    )
    _MODEL_CACHE.clear()
    _MODEL_CACHE[key] = model
    return model


def _default_state(raw: Any) -> Any:
    """A consumer group's state follows its partitions: ``state.type`` defaults to kafka when every
    source is a Kafka source, to local otherwise."""
    if not isinstance(raw, dict):
        return raw
    sources, state = raw.get("sources"), raw.get("state")
    if state is None:
        state = {}
    if not isinstance(sources, dict) or not sources or not isinstance(state, dict) or "type" in state:
        return raw
    if all(isinstance(s, dict) and s.get("type") == "kafka" for s in sources.values()):
        return {**raw, "state": {**state, "type": "kafka"}}
    return raw


def _check_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        if not _NAME_RE.match(name):
            raise ValueError(f"component name {name!r} must match {_NAME_RE.pattern}")
    return value


def substitute_env(node: Any, path: str, errors: list[str], env: dict[str, str], unset: set[str] | None = None) -> Any:
    """Substitute ``${VAR}`` / ``${VAR:-default}``; an unset variable without a default is an error,
    and its path goes to ``unset`` (the empty value it leaves is not reported a second time)."""
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            if unset is not None:
                unset.add(path)
            return ""

        return _ENV_RE.sub(repl, node)
    if isinstance(node, dict):
        return {k: substitute_env(v, f"{path}.{k}" if path else str(k), errors, env, unset) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, f"{path}[{i}]", errors, env, unset) for i, v in enumerate(node)]
    return node


def _under(line: str, paths: Iterable[str]) -> bool:
    """True when the error ``line`` ("path: message") is about one of ``paths`` or a part of it."""
    where = line.split(": ", 1)[0]
    return any(where == p or where.startswith((p + ".", p + "[")) for p in paths)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing.

    >>> did_you_mean("teamm", ["team", "model"]), did_you_mean("zzz", ["team"])
    (" (did you mean 'team'?)", '')
    """
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One ``path: message`` per error; unknown keys, types and choices with a "did you mean".

    ``model`` is the validated model (to name the keys an unknown one may have meant).
    """
    lines = []
    tags = {t for kind in ("source", "decoder", "detector", "sink") for t in components(kind)}
    # include_input is needed to suggest a choice; inputs are never printed (secrets).
    for err in exc.errors(include_url=False, include_input=True):
        loc = tuple(err["loc"])
        # Drop the tag pydantic inserts for tagged unions ("sinks.x.webhook.url" → "sinks.x.url").
        cleaned: list[Any] = []
        for i, part in enumerate(loc):
            tagged_slot = (i == 2 and loc[0] in _KINDS) or (i > 0 and loc[i - 1] == "decoder")
            if tagged_slot and isinstance(part, str) and part in tags:
                continue
            cleaned.append(part)
        msg = err["msg"]
        if err["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]  # our validators' own words, without pydantic's prefix
        ctx = err.get("ctx") or {}
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1]) if model is not None else None
            msg = "unknown key" + (did_you_mean(str(loc[-1]), allowed) if allowed else "")
        elif err["type"] == "union_tag_invalid":
            # pydantic puts this on the component; the mistake is its `type:` value
            field = str(ctx.get("discriminator", "type")).strip("'")
            known = sorted(_QUOTED.findall(str(ctx.get("expected_tags", ""))))
            tag = str(ctx.get("tag", ""))
            cleaned.append(field)
            msg = f"unknown {field} {tag!r}{did_you_mean(tag, known)}; known: {', '.join(known)}"
        elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
            msg += did_you_mean(err["input"], _QUOTED.findall(str(ctx.get("expected", ""))))
        lines.append(f"{_format_loc(tuple(cleaned))}: {msg}")
    return lines


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model found at ``loc`` (pydantic's, tags included), or None."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    tp = _plain(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]  # as the file spells them (`continue`)
    return None


def _plain(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``None`` members."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _plain(members[0])
    return tp


def _step(tp: Any, part: Any) -> Any:
    """The type found one ``loc`` part below ``tp``: a field, a mapping value, a list item, a union member by tag."""
    tp = _plain(tp)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for member in get_args(tp):
            m = _plain(member)
            tagged = isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields
            if tagged and part in get_args(m.model_fields["type"].annotation):
                return m
        return None
    if origin is dict:
        return get_args(tp)[1]
    if origin in (list, tuple, set, frozenset):
        return get_args(tp)[0] if isinstance(part, int) else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field is not None else None
    return None


_KINDS: dict[str, Any] = {"sources": "source", "detectors": "detector", "sinks": "sink"}


class _UniqueKeys(yaml.SafeLoader):
    """A YAML loader that remembers every key given twice in one mapping (YAML forbids it; PyYAML would
    silently keep the last one: a second ``logs:`` source replacing the first)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                self.duplicates.append(f"line {line}: key {key!r} given twice in one mapping (also line {seen[key]})")
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    loader = _UniqueKeys(text)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def load_config_text(text: str, origin: str = "<config>", env: dict[str, str] | None = None) -> Any:
    errors: list[str] = []
    try:
        raw, duplicates = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError([f"{origin}: invalid YAML at {where}: {getattr(exc, 'problem', exc)}"]) from None
    if duplicates:
        raise ConfigError([f"{origin}: {d}" for d in duplicates])
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"<root>: expected a mapping, got {type(raw).__name__}"])
    unset: set[str] = set()
    raw = substitute_env(raw, "", errors, dict(os.environ) if env is None else env, unset)
    model = agent_config_model()
    try:
        cfg = model.model_validate(raw)
    except ValidationError as exc:
        # A value left empty by an unset variable is reported once: as the variable, its cause.
        errors.extend(e for e in format_validation_error(exc, model) if not _under(e, unset))
        raise ConfigError(errors) from None
    errors.extend(e for e in cross_check(cfg) if not _under(e, unset))
    if errors:
        raise ConfigError(errors)
    return cfg


def component_problems(cfg: Any) -> list[str]:
    """A configured component whose class cannot run (a plugin's, usually): what the class lacks, at its ``type``
    path — so ``validate`` finds it, not the start of ``run``. Detectors: :func:`detectors.base.check_detector`;
    sources and sinks: their class's ``check_config(config class)`` (see :class:`agent.sources.base.Source` and
    :class:`sinks.delivery.QueuedSink`)."""
    from detectors.base import check_detector

    errors: list[str] = []
    sections: tuple[tuple[registry.Kind, dict[str, Any]], ...] = (
        ("source", cfg.sources),
        ("detector", cfg.detectors),
        ("sink", cfg.sinks),
    )
    for kind, section in sections:
        table = components(kind)
        for name, c in section.items():
            cls = table[c.type][1]
            why: str | None = None
            if kind == "detector":
                try:
                    check_detector(cls)
                except TypeError as exc:
                    why = str(exc)
            else:
                check = getattr(cls, "check_config", None)
                why = check(type(c)) if check is not None else None
            if why:
                errors.append(f"{kind}s.{name}.type: {why}")
    return errors


def cross_check(cfg: Any) -> list[str]:
    """Checks that span components (run after the per-field validation)."""
    errors: list[str] = component_problems(cfg)
    for name, det in cfg.detectors.items():
        if det.per is not None and det.per == det.signal:
            errors.append(f"detectors.{name}.per: dividing {det.signal} by itself is always 1")
        overlap = set(det.contributors_by or ()) & set(det.group_by)
        if overlap:
            errors.append(f"detectors.{name}.contributors_by: {sorted(overlap)} already split the series (group_by)")
    if cfg.state.type == "kafka":
        servers = None
        for name, src in cfg.sources.items():
            if src.type != "kafka":
                errors.append(f"sources.{name}.type: with state.type kafka every source must be a kafka source")
            elif servers is None:
                servers = src.bootstrap_servers
            elif src.bootstrap_servers != servers:
                errors.append(f"sources.{name}.bootstrap_servers: one cluster for all sources with state.type kafka")
    else:
        for name, src in cfg.sources.items():
            if getattr(src, "keyed_by_series", False):
                errors.append(f"sources.{name}.keyed_by_series: only applies with state.type kafka")
    paths: dict[str, str] = {}
    for name, src in cfg.sources.items():
        if src.type == "file" and src.watch:
            if src.path in paths:
                errors.append(f"sources.{name}.path: also watched by sources.{paths[src.path]}")
            paths[src.path] = name
    errors.extend(check_signals(cfg))
    errors.extend(_bucket_widths(cfg))
    errors.extend(route_errors(cfg))
    return errors


_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}


def _bucket_widths(cfg: Any) -> list[str]:
    """A usage API source's buckets are no longer than the windows of the detectors that read them: a daily bucket is
    stamped at its start, and an hourly detector would see a whole day's usage in its first hour (every day)."""
    errors = []
    for name, src in cfg.sources.items():
        if src.type != "openai_usage":
            continue
        width = 86400 if "costs" in src.endpoints else _WIDTHS[src.bucket_width]
        signals = {"cost_usd"} if "costs" in src.endpoints else None  # (usage: every token signal)
        for dname, det in cfg.detectors.items():
            if signals is not None and det.signal not in signals or det.signal == "cost_usd" and signals is None:
                continue
            if det.window_seconds < width:
                key = "endpoints" if signals is not None else "bucket_width"
                errors.append(
                    f"sources.{name}.{key}: its buckets ({width:g} s) are longer than detectors.{dname}'s window "
                    f"({det.window_seconds:g} s): each bucket would land whole in one window"
                )
    return errors


def source_emits(cfg: Any) -> dict[str, Any]:
    """Source name → what its decoder can emit (:class:`agent.decoders.base.Emits`), from the config alone."""
    from agent.decoders.base import Emits

    decoders = components("decoder")
    out: dict[str, Emits] = {}
    for name, src in cfg.sources.items():
        dec = getattr(src, "decoder", None)
        entry = decoders.get(getattr(dec, "type", ""))
        out[name] = entry[1].emits(dec) if entry is not None and hasattr(entry[1], "emits") else Emits()
    return out


def check_signals(cfg: Any) -> list[str]:
    """A detector whose signal or dimensions no configured source can produce never fires: report it.

    ``signal`` must be emitted by some source; ``per`` and ``cost_signal`` in the same observation
    as ``signal`` (that is where a detector reads them); ``group_by`` and ``contributors_by``
    dimensions, and those ``where`` and ``exclude`` filter on, by some source that emits ``signal``.
    Open declarations are not checked.
    """
    emits = source_emits(cfg)
    if any(e.signals is None for e in emits.values()):
        return []  # some source may emit anything: nothing can be ruled out
    every_signal = sorted(set().union(*(e.signals for e in emits.values())))
    errors: list[str] = []
    for name, det in cfg.detectors.items():
        where = f"detectors.{name}"
        producers = [e for e in emits.values() if det.signal in e.signals]
        if not producers:
            errors.append(
                f"{where}.signal: no configured source emits {det.signal!r}{did_you_mean(det.signal, every_signal)}; "
                f"sources emit: {', '.join(every_signal)}"
            )
            continue
        together = sorted({s for e in producers for g in e.groups() if det.signal in g for s in g} - {det.signal})
        for key in ("per", "cost_signal"):
            other = getattr(det, key, None)
            if other is None or other == det.signal or other in together:
                continue
            if other in every_signal:
                problem = f"no configured source emits {other!r} together with {det.signal!r}"
            else:
                problem = f"no configured source emits {other!r}"
            errors.append(
                f"{where}.{key}: {problem}{did_you_mean(other, together)}; "
                f"with {det.signal}: {', '.join(together) or 'nothing'}"
            )
        if any(e.dimensions is None for e in producers):
            continue
        dims = sorted(set().union(*(e.dimensions for e in producers)))
        for key in ("group_by", "contributors_by"):
            for i, dim in enumerate(getattr(det, key, None) or ()):
                if dim not in dims:
                    errors.append(
                        f"{where}.{key}[{i}]: no configured source that emits {det.signal} has dimension {dim!r}"
                        f"{did_you_mean(dim, dims)}; they have: {', '.join(dims) or 'none'}"
                    )
        errors.extend(_filter_errors(det, where, dims))
    return errors


def _filter_errors(det: Any, where: str, dims: list[str]) -> list[str]:
    """A detector's ``where`` / ``exclude``: dimensions some source has, billing values the decoders give, and no
    value both counted and left out."""
    from agent.decoders.billing.base import BILLING_PREFIX
    from agent.decoders.billing.values import value_problem

    errors: list[str] = []
    billing = det.signal.startswith(BILLING_PREFIX)
    for key in ("where", "exclude"):
        for dim, values in getattr(det, key).items():
            if dim not in dims:
                errors.append(
                    f"{where}.{key}.{dim}: no configured source that emits {det.signal} has dimension {dim!r}"
                    f"{did_you_mean(dim, dims)}; they have: {', '.join(dims) or 'none'}"
                    + (" (a billing decoder's `dimensions` option chooses them)" if billing else "")
                )
                continue
            if billing:
                for i, value in enumerate(values):
                    problem = value_problem(dim, value)
                    if problem:
                        errors.append(f"{where}.{key}.{dim}[{i}]: {problem}")
    for dim, values in det.exclude.items():
        common = sorted(set(values) & set(det.where.get(dim, ())))
        if common:
            errors.append(f"{where}.exclude.{dim}: {common} also in where: the detector would count nothing of them")
    return errors


def load_config(path: str | None) -> Any:
    if path is None:
        text = default_config_text()
        return load_config_text(text, "<embedded default>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return load_config_text(text, str(p))


def default_config_text() -> str:
    return resources.files("config").joinpath("default.yaml").read_text(encoding="utf-8")
