"""The shapes of Azure Monitor records as the Azure OpenAI decoder reads them (``agent/decoders/azure_openai.py``):
typed msgspec structs with only the fields read (each in camelCase and PascalCase: Azure spells the same field both
ways), numbers that may come as strings, a resource id's parts, and a record's identity (a metric record exported twice
counts once)."""

from __future__ import annotations

import math
from typing import Any

import msgspec


class Bad(Exception):
    """A record the decoder cannot use: ``kind`` (the metric label) and a reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


Num = float | str | None  # a count: a JSON number, or a number in a string (data collection rule exports)


class _Details(msgspec.Struct, gc=False):
    cached_tokens: Num = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: Num = None
    completion_tokens: Num = None
    total_tokens: Num = None
    input_tokens: Num = None  # the Responses API's names
    output_tokens: Num = None
    prompt_tokens_details: _Details | None = None
    input_tokens_details: _Details | None = None


class Body(msgspec.Struct, gc=False):
    model: str | None = None
    usage: _Usage | None = None


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


def _fields(names: tuple[str, ...], typ: Any) -> list[tuple[str, Any, None]]:
    """A field for each name in camelCase and in PascalCase (Azure spells the same field both ways)."""
    return [(n, typ, None) for name in names for n in (name, _pascal(name))]


_PASCAL: dict[str, str] = {}


def get(obj: Any, name: str) -> Any:
    """The camelCase field, else the PascalCase one."""
    v = getattr(obj, name)
    if v is None:
        pascal = _PASCAL.get(name) or _PASCAL.setdefault(name, _pascal(name))
        v = getattr(obj, pascal)
    return v


def structs(bodies: bool) -> tuple[type, type, type]:
    """The typed record, message and properties structs: only the fields the decoder reads (bodies only when asked).

    A record's ``records`` (an envelope's) are raw JSON, each decoded on its own; a message's are records, decoded
    with it in one call (when one of them is bad, the message is decoded again as a record, each record on its own).
    """
    props = msgspec.defstruct(
        "Properties",
        [
            *_fields(("promptTokens", "completionTokens", "totalTokens", "promptCachedTokens", "sequenceNumber"), Num),
            *_fields(("modelName", "deploymentName", "modelDeploymentName", "model", "region"), str | None),
            *_fields(("correlationId", "requestId"), str | None),
            *_fields(("usage",), _Usage | None),
            *(_fields(("responseBody", "backendResponseBody", "backendUrl", "url"), str | None) if bodies else []),
        ],
        gc=False,
    )
    fields = [
        *_fields(("time", "resourceId", "metricName", "timeGrain", "location", "region", "correlationId"), str | None),
        *_fields(("total",), Num),
        *_fields(("dimension", "dimensions"), dict[str, str] | None),
        *_fields(("properties",), props | str | None),
    ]
    record = msgspec.defstruct("AzureMonitorRecord", [*fields, ("records", list[msgspec.Raw] | None, None)], gc=False)
    records = list[record] | None  # type: ignore[valid-type]
    message = msgspec.defstruct("AzureMonitorMessage", [*fields, ("records", records, None)], gc=False)
    return record, message, props


def num(v: float | str, what: str, limit: float) -> float:
    if type(v) is float and 0.0 <= v <= limit:  # the common case first (NaN fails the comparison)
        return v
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            raise Bad("schema", f"{what}: not a number: {v[:50]!r}") from None
    else:
        x = v
    if x != x or x in (math.inf, -math.inf):
        raise Bad("absurd_value", f"{what}: not a finite number")
    if x < 0:
        raise Bad("negative_value", f"{what}: negative ({x:g})")
    if x > limit:
        raise Bad("absurd_value", f"{what}: {x:g} is over {limit:g}")
    return x


def num_or_0(v: float | str | None, what: str, limit: float) -> float:
    return 0.0 if v is None else num(v, what, limit)


def location(rec: Any) -> str:
    """A record's ``location``, else its ``region`` (each in either spelling, as :func:`get`), else ""."""
    v = rec.location if rec.location is not None else rec.Location
    if v:
        return v
    return (rec.region if rec.region is not None else rec.Region) or ""


def parse_resource_id(rid: str) -> tuple[str, str, str]:
    """(subscription, resource group, resource name) of an ARM resource id, lower-cased; missing parts are empty.

    >>> parse_resource_id("/SUBSCRIPTIONS/AB-12/RESOURCEGROUPS/RG-AI/PROVIDERS/MICROSOFT.COGNITIVESERVICES/ACCOUNTS/A")
    ('ab-12', 'rg-ai', 'a')
    """
    parts = rid.strip().strip("/").lower().split("/")
    sub = rg = name = ""
    for i in range(len(parts) - 1):
        p = parts[i]
        if p == "subscriptions" and not sub:
            sub = parts[i + 1]
        elif p == "resourcegroups" and not rg:
            rg = parts[i + 1]
        elif p == "providers" and not name and i + 3 < len(parts):
            name = parts[i + 3]  # providers/<namespace>/<type>/<name>[/<child type>/<child>...]
    return sub, rg, name


def request_identity(where: object, rec: Any, props: Any, when: str | None) -> int | None:
    """A request log's identity — where it counts, its correlation (or request) id and time — where it has an id (API
    Management's ``CorrelationId``, a log's ``correlationId`` or ``requestId``); None without one (two calls
    alike in every other field may be two calls). A copy delivered again is the same call."""
    corr = (
        (rec.correlationId if rec.correlationId is not None else rec.CorrelationId)
        or (props.correlationId if props.correlationId is not None else props.CorrelationId)
        or (props.requestId if props.requestId is not None else props.RequestId)
    )
    return hash((where, corr, when)) if corr else None
