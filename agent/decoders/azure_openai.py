"""Azure OpenAI (``Microsoft.CognitiveServices/accounts``) token usage from Azure Monitor → tokens and token cost.

A message is what an Azure Monitor diagnostic setting sends to Event Hubs (one event body, or one line of a
file): the envelope ``{"records": [...]}``, a bare JSON array of records, or one record. Two kinds of record are
read; everything else is ignored without being bad (counted in :attr:`AzureOpenAIDecoder.ignored`):

- **Metric records** (``time, resourceId, metricName, timeGrain, count, total, minimum, maximum, average``; the
  sample in ``data/eventhubs/``): ``total`` of the metrics named by ``token_metrics`` (below). Diagnostic settings
  export them without dimensions: the ``resourceId`` names the account, so the model comes from ``deployments``
  (account name → model) or ``default_model``. Metrics exported by a data collection rule carry a ``dimension``
  map (``ModelDeploymentName``, ``ModelName``, ``Region``) and capitalised aggregates as strings
  (``"Total": "63"``); both shapes are read. Other metrics (the sample's ``dependencies/duration``) are ignored.
- **Request logs** (``time, resourceId, operationName, category, location, properties``; ``properties`` is a JSON
  object or a JSON *string*, Azure sends both) that carry token usage: API Management ``GatewayLlmLogs``
  (``PromptTokens``, ``CompletionTokens``, ``TotalTokens``, ``ModelName``, ``DeploymentName``, ``Region``; or in
  camelCase, as the Event Hubs payload is reported to spell them) and any log with an OpenAI ``usage`` block
  (``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens``; or the Responses API's
  ``input_tokens`` / ``output_tokens``). One such record is one request. ``RequestResponse`` and ``Audit`` logs of
  the account carry no tokens and are ignored. With ``response_bodies: true``, the ``usage`` of a logged response
  body (API Management ``GatewayLogs`` with body logging) is read too.

Signals (Bedrock's, so the token detectors apply unchanged): ``requests``, ``input_tokens`` (uncached),
``output_tokens``, ``cached_input_tokens``, ``tokens`` (their sum, plus totals reported without a split),
``token_cost_usd``, ``cache_savings_usd``. Dimensions: ``provider=azure``, ``service=azure-openai``,
``billing_account`` (subscription id), ``resource_group``, ``account`` (the resource's name: the Cognitive
Services account, or the API Management service for gateway logs), ``region`` (``location`` / ``Region``,
lower case without spaces), ``deployment``, ``model`` (``(unknown)`` when neither reported nor mapped) and
``constant_dimensions``.
``resourceId`` is read case-insensitively (Azure upper-cases it) and its parts are lower-cased.

Decisions:

- **Double counting.** Azure exports the same calls under two metric families (``ProcessedPromptTokens`` /
  ``GeneratedTokens`` / ``AzureOpenAIRequests``, and the newer ``InputTokens`` / ``OutputTokens`` /
  ``ModelRequests``) and as totals (``TokenTransaction``, ``TotalTokens``); a diagnostic setting with
  ``AllMetrics`` sends them all. Only the metrics listed in ``token_metrics`` count (default: the newer split),
  and the config is refused when two of them measure the same thing (two input metrics, or a total beside a
  split). A total alone counts as ``tokens`` without cost (prices need the split). Logs: API Management writes a
  request's prompt and completion messages as separate records of the same correlation id (``SequenceNumber`` >
  0); only records with token counts count, and chunks are skipped. Do not stream ``GatewayLogs`` with
  ``response_bodies`` *and* ``GatewayLlmLogs`` of the same gateway into one source: the call would count twice.
- **Delivered twice.** Event Hubs delivers at least once, and a diagnostic setting re-sent (or two settings
  streaming one account into one hub) repeats metric records whole. A metric record identical to one already counted
  (resource, metric, grain, time, dimensions and total) is left out and counted
  (``finops_agent_events_discarded_total{reason="ignored_duplicate_record"}``), as long as its minute is open: a copy
  arriving after the minute was sealed is ``late``. A request log with a correlation or request id counts once per
  (resource, id, time) the same way; one without an id is never merged (two calls may be alike in every field).
- **Cached tokens.** OpenAI's ``prompt_tokens`` include ``cached_tokens``: input = prompt - cached. API
  Management's ``promptCachedTokens`` is taken as part of ``promptTokens`` too, unless it cannot be (it is
  larger, or ``TotalTokens`` = prompt + completion + cached, as for Anthropic models behind the gateway).
- **Event time.** A record's ``time``: for a metric record the *start* of its ``timeGrain`` (``PT1M``, ``PT1H``),
  so an hourly record lands whole in the bucket of its first minute; for a log, the request. Observations are
  summed per (bucket, dimensions) inside a batch and stamped with the bucket start;
  ``ctx.max_event_time`` is the latest accepted record's time. Azure writes 7 fractional digits
  (``2025-07-14T12:45:00.0000000Z``): :func:`agent.model.parse_time` reads them.
- **Bad input.** Records of an envelope are decoded one by one: a bad record is reported with its own JSON bytes
  as ``raw`` and costs nothing but itself; a message that is not JSON, or whose ``records`` is not a list, is bad
  as a whole. Kinds: ``malformed_json``, ``schema`` (wrong type, missing ``time``/``total``, bad timestamp),
  ``negative_value``, ``absurd_value`` (non-finite, or over ``max_tokens_per_record`` / ``max_metric_value``),
  ``timestamp_out_of_range``, ``late``; a record with tokens whose model is unknown or unpriced is
  ``unknown_model`` with ``partial=True`` (tokens counted, cost not) and ``subject`` = the model, or the
  deployment / account to map. An Event Hubs source that unpacks envelopes hands over single records: the same.

Sources (field names): *verified* in Microsoft's docs (MicrosoftDocs/azure-monitor-docs
``reference/supported-metrics/microsoft-cognitiveservices-accounts-metrics.md``: metric names, all "DS Export:
Yes"; ``data-collection/metrics-export-create.md``: the DCR export record, and dimensions as what DCRs add over
diagnostic settings; learn.microsoft.com ``azure-monitor/reference/tables/apimanagementgatewayllmlog`` and
``api-management/api-management-howto-llm-logs``: ``GatewayLlmLogs`` columns and chunking) and in recorded
payloads (elastic/integrations ``packages/azure_openai`` test logs: ``RequestResponse`` with ``properties`` as a
string and as an object, ``Audit``, ``GatewayLogs`` bodies with ``usage``). *Assumed*: the exact casing of
``GatewayLlmLogs`` properties on Event Hubs (a third-party processor reads ``promptTokens``, ``modelName``,
``promptCachedTokens``; both casings are accepted), that only the ``SequenceNumber`` 0 record of a request holds
its tokens, and the semantics of ``promptCachedTokens``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import math
import re
from typing import Any, Literal

import msgspec
from pydantic import Field, field_validator

from agent.decoders.azure_records import (
    Bad,
    Body,
    get,
    location,
    num,
    num_or_0,
    parse_resource_id,
    request_identity,
    structs,
)
from agent.decoders.base import (
    BLANK,
    BOM,
    LATE,
    LATE_REASON,
    BadRecord,
    DecodeContext,
    Decoded,
    Decoder,
    Emits,
    Recent,
)
from agent.decoders.bedrock import SIGNALS  # the token signals, one order for every token decoder
from agent.model import Cell, Observation, cell, make_dims, parse_time
from agent.pricing import TokenPriceTable
from agent.registry import ComponentConfig, register

log = logging.getLogger(__name__)

DIMENSIONS = (
    "provider",
    "service",
    "billing_account",
    "resource_group",
    "account",
    "region",
    "deployment",
    "model",
)
UNKNOWN_MODEL = "(unknown)"
_SEEN_MAX = 200_000  # metric records remembered to count each once (about 4 days of 30 metric series a minute)

#: The token and request metrics of Microsoft.CognitiveServices/accounts (lower-cased name → what they count).
METRIC_ROLES = {
    "processedprompttokens": "input_tokens",
    "inputtokens": "input_tokens",
    "generatedtokens": "output_tokens",
    "outputtokens": "output_tokens",
    "tokentransaction": "tokens",
    "totaltokens": "tokens",
    "azureopenairequests": "requests",
    "modelrequests": "requests",
}
_NAMES = {
    n.lower(): n
    for n in (
        "ProcessedPromptTokens",
        "InputTokens",
        "GeneratedTokens",
        "OutputTokens",
        "TokenTransaction",
        "TotalTokens",
        "AzureOpenAIRequests",
        "ModelRequests",
    )
}
# Position of each role in a record's counts: requests, uncached input, output, cached input, total-only tokens.
_SLOT = {"requests": 0, "input_tokens": 1, "output_tokens": 2, "tokens": 4}
_DEPLOYMENT_IN_URL = re.compile(r"/deployments/([^/?#]+)")


class AzureOpenAIConfig(ComponentConfig):
    type: Literal["azure_openai"]
    deployments: dict[str, str] = Field(
        default_factory=dict,
        description="account or deployment name → model (metric records name no model); names match in any case",
    )
    default_model: str = Field("", description="the model of a record whose model is neither reported nor mapped")
    token_metrics: list[str] = Field(
        default_factory=lambda: ["InputTokens", "OutputTokens", "ModelRequests"],
        min_length=1,
        description="the metrics that count (at most one per role: input, output, total, requests; a total only "
        "without a split): e.g. [ProcessedPromptTokens, GeneratedTokens, AzureOpenAIRequests] for older accounts",
    )
    response_bodies: bool = Field(
        False,
        description="also read `usage` from logged response bodies (API Management GatewayLogs); not together with "
        "GatewayLlmLogs of the same gateway, which log the same calls",
    )
    constant_dimensions: dict[str, str] = Field(default_factory=dict, description="e.g. environment: prod")
    max_tokens_per_record: int = Field(
        10_000_000, gt=0, description="a larger token count in a request log is absurd and rejected"
    )
    max_metric_value: float = Field(1e12, gt=0, description="a larger metric total is absurd and rejected")

    @field_validator("token_metrics")
    @classmethod
    def _one_per_role(cls, v: list[str]) -> list[str]:
        roles: dict[str, str] = {}
        for name in v:
            role = METRIC_ROLES.get(name.lower())
            if role is None:
                known = ", ".join(sorted({"ProcessedPromptTokens", "InputTokens", "GeneratedTokens", "OutputTokens"}))
                close = difflib.get_close_matches(name.lower(), list(METRIC_ROLES), n=1)
                hint = f" (did you mean {_NAMES[close[0]]!r}?)" if close else ""
                raise ValueError(
                    f"{name!r} is not a token or request metric{hint}; known: {known}, TokenTransaction, "
                    "TotalTokens, AzureOpenAIRequests, ModelRequests"
                )
            if role in roles:
                raise ValueError(f"{roles[role]} and {name} both count {role} (the same calls): keep one")
            roles[role] = name
        if "tokens" in roles and ("input_tokens" in roles or "output_tokens" in roles):
            split = roles.get("input_tokens") or roles["output_tokens"]
            raise ValueError(
                f"{roles['tokens']} is the sum of input and output tokens: with {split} every token would count twice"
            )
        return v

    @field_validator("constant_dimensions")
    @classmethod
    def _not_ours(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(v) & set(DIMENSIONS))
        if clash:
            raise ValueError(f"{', '.join(clash)}: set by the decoder itself")
        return v


# What a record resolves to: (cell, $/input token, $/output token, $/cached token, priced, subject, reason).
_Info = tuple[Cell, float, float, float, bool, str, str]


@register("decoder", "azure_openai", AzureOpenAIConfig)
class AzureOpenAIDecoder(Decoder):
    type_name = "azure_openai"

    def __init__(self, cfg: AzureOpenAIConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.prices = TokenPriceTable.from_config(pricing)
        self._roles = {name.lower(): METRIC_ROLES[name.lower()] for name in cfg.token_metrics}
        if not {"input_tokens", "output_tokens"} & set(self._roles.values()):
            log.warning(
                "azure_openai: token_metrics %s has no input or output metric: metric records count tokens without "
                "a price (token_cost_usd comes from request logs only)",
                cfg.token_metrics,
            )
        self._max_metric = cfg.max_metric_value
        self._max_tokens = cfg.max_tokens_per_record
        # metric name as written → (slot in a record's counts, role), or (None, why it is ignored)
        self._metric_slots: dict[str, tuple[int | None, str]] = {}
        self._deployments = {k.lower(): v for k, v in cfg.deployments.items()}
        self._const = tuple(cfg.constant_dimensions.items())
        record_t, message_t, props_t = structs(cfg.response_bodies)
        self._record_dec: Any = msgspec.json.Decoder(record_t)
        self._message_dec: Any = msgspec.json.Decoder(message_t)
        self._props_dec: Any = msgspec.json.Decoder(props_t)
        self._list_dec = msgspec.json.Decoder(list[msgspec.Raw])
        self._body_dec = msgspec.json.Decoder(Body)
        self._info: dict[tuple[str, str, str, str], _Info] = {}  # (resource id, region, deployment, model) → info
        self._times: dict[str, float] = {}  # time string → epoch seconds (metric records share their times)
        self._seen = Recent(_SEEN_MAX)  # identities of metric records and requests counted (until sealed)
        self.unknown_models: dict[str, int] = {}
        #: Records read and left out on purpose, by reason: ``other_metric`` (not a token metric),
        #: ``unselected_token_metric`` (a token metric not in ``token_metrics``), ``no_tokens`` (a log without token
        #: usage: RequestResponse, Audit...), ``message_chunk`` (a gateway log's prompt or completion chunk),
        #: ``duplicate_record`` (a metric record identical to one counted: Event Hubs delivers at least once).
        self.ignored: dict[str, int] = {}

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        s = sample.lower()
        return b'"resourceid"' in s and (b"microsoft.cognitiveservices" in s or b"gatewayllmlogs" in s)

    @classmethod
    def emits(cls, cfg: AzureOpenAIConfig) -> Emits:
        return Emits(frozenset(SIGNALS), frozenset({*DIMENSIONS, *cfg.constant_dimensions}))

    def prices_unknown(self) -> dict[str, int]:
        return dict(self.unknown_models)

    def ignored_records(self) -> dict[str, int]:
        return dict(self.ignored)

    def record_problem(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, Bad):
            return exc.kind, exc.reason
        if isinstance(exc, msgspec.ValidationError):  # a subclass of DecodeError: first
            msg = str(exc)
            return ("absurd_value" if "out of range" in msg else "schema"), f"invalid Azure Monitor record: {msg}"
        if isinstance(exc, msgspec.DecodeError):
            return "malformed_json", f"malformed JSON: {exc}"
        return super().record_problem(exc)

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """Every message, and every record of a message, on its own: a bad one costs itself alone (never raises
        for bad input; the decoder's state changes only at the end)."""
        bucket = ctx.bucket_seconds
        acc: dict[float, dict[Cell, list[float]]] = {}
        infos: dict[Cell, _Info] = {}
        unpriced: dict[Cell, list[bytes]] = {}
        unknown: dict[str, int] = {}
        ignored: dict[str, int] = {}
        bad: list[BadRecord] = []
        newest = -math.inf
        seen = self._seen.values  # identities counted before
        fresh: dict[int, float] = {}  # and in this batch (→ bucket)
        decode, read, times = self._record_dec.decode, self._read, self._times
        min_ts, max_ts, late_before = ctx.min_ts, ctx.max_ts, ctx.late_before
        envelope: list[Any] = [None, None]  # the last message whose records were wanted as JSON, and those

        def raw_of(raw: Any, line: bytes) -> bytes:
            """A record's JSON: ``raw``, or when ``raw`` is an int, that record of the envelope ``line`` (decoded typed
            in one call: its records' JSON is decoded only when one of them is wanted, once per envelope)."""
            if type(raw) is not int:
                return bytes(raw)
            if envelope[0] is not line:
                envelope[0], envelope[1] = line, decode(line).records
            return bytes(envelope[1][raw])

        for line in lines:
            try:
                # The common case first: a line that starts with a record or an envelope, decoded in one call with
                # the envelope's records; when that fails, as _split reads it: each record of an envelope on its own.
                rec = None
                if line[:1] == b"{":
                    try:
                        rec = self._message_dec.decode(line)
                    except Exception:
                        rec = decode(line)
                if rec is None:
                    records = self._split(line)
                elif rec.records is None:
                    records = [(line, rec)]
                elif rec.records and type(rec.records[0]) is msgspec.Raw:
                    records = [(r, None) for r in rec.records]
                else:
                    records = list(enumerate(rec.records))
            except Exception as exc:
                bad.append(BadRecord(line, *self.record_problem(exc)))
                continue
            for raw, rec in records:
                try:
                    if rec is None:
                        rec = decode(raw)
                    got = read(rec, ignored)
                    if got is None:
                        continue
                    when, info, counts, has_tokens, ident = got
                    ts = times.get(when)  # type: ignore[arg-type]
                    if ts is None or not min_ts <= ts <= max_ts:
                        ts = self._time(when, ctx)  # (not cached, or out of range: the error)
                except Exception as exc:
                    bad.append(BadRecord(raw_of(raw, line), *self.record_problem(exc)))
                    continue
                b = ts - ts % bucket
                if b < late_before:
                    bad.append(BadRecord(raw_of(raw, line), LATE, LATE_REASON))
                    continue
                if ident is not None:  # a metric record, a request with an id: counted once (a late copy: late)
                    if ident in seen or ident in fresh:
                        ignored["duplicate_record"] = ignored.get("duplicate_record", 0) + 1
                        continue
                    fresh[ident] = b
                if ts > newest:
                    newest = ts
                c = info[0]
                a = acc.get(b)
                if a is None:
                    a = acc[b] = {}
                sums = a.get(c)
                if sums is None:
                    a[c] = counts
                    infos[c] = info
                else:
                    sums[0] += counts[0]
                    sums[1] += counts[1]
                    sums[2] += counts[2]
                    sums[3] += counts[3]
                    sums[4] += counts[4]
                if has_tokens and not info[4]:
                    unpriced.setdefault(c, []).append(raw_of(raw, line))
                    unknown[info[5]] = unknown.get(info[5], 0) + 1
        out: list[Observation] = []
        for b, a in acc.items():
            for c, (n, tin, tout, tcr, ttot) in a.items():
                _c, p_in, p_out, p_cr, *_rest = infos[c]
                cost = tin * p_in + tout * p_out + tcr * p_cr
                saved = tcr * (p_in - p_cr)
                out.append(Observation(b, c, (n, tin, tout, tcr, tin + tout + tcr + ttot, cost, saved)))
        for c, raws in unpriced.items():
            _c, _i, _o, _k, _priced, subject, reason = infos[c]
            bad.extend(BadRecord(r, "unknown_model", reason, partial=True, subject=subject) for r in raws)
        for name, n in unknown.items():
            self.unknown_models[name] = self.unknown_models.get(name, 0) + n
        for why, n in ignored.items():
            self.ignored[why] = self.ignored.get(why, 0) + n
        self._seen.add(fresh, late_before)  # (kept until their buckets are sealed: a later copy is late)
        if newest > ctx.max_event_time:
            ctx.max_event_time = newest
        return out, bad

    def _split(self, line: bytes) -> list[tuple[Any, Any]]:
        """A message's records: (raw JSON, decoded record or None to decode)."""
        body = line[3:] if line.startswith(BOM) else line
        head = body.lstrip()[:1]
        if not head:
            raise Bad(BLANK, "blank line")
        if head == b"[":
            return [(r, None) for r in self._list_dec.decode(body)]
        rec = self._record_dec.decode(body)
        if rec.records is not None:  # the envelope {"records": [...]}
            return [(r, None) for r in rec.records]
        return [(line, rec)]

    def _time(self, s: str | None, ctx: DecodeContext) -> float:
        if not s:
            raise Bad("schema", "record without time")
        ts = self._times.get(s)
        if ts is None:
            # Azure's form (2025-07-14T12:46:10.1234567Z) read directly; parse_time (a few times slower: request logs'
            # times are all different) reads the rest, or says what is wrong.
            try:
                d = _dt.datetime.fromisoformat(s)
                ts = d.timestamp() if d.tzinfo is not None else None
            except ValueError:
                ts = None
            if ts is None:
                try:
                    ts = parse_time(s)
                except ValueError as exc:
                    raise Bad("schema", f"time {s[:40]!r}: {exc}") from None
            # Only whole seconds are remembered: the times metric records share (their grain's start). A request
            # log's time is its own (to 100 ns): remembering those would only fill the cache, at a cost.
            if ts % 1.0 == 0.0:
                if len(self._times) >= 50_000:
                    self._times.clear()
                self._times[s] = ts
        if not ctx.min_ts <= ts <= ctx.max_ts:
            raise Bad("timestamp_out_of_range", f"time {s} outside the accepted range")
        return ts

    def _read(
        self, rec: Any, ignored: dict[str, int]
    ) -> tuple[str | None, _Info, list[float], bool, int | None] | None:
        """(time, info, counts, carries tokens, identity: a metric record's, or a request's with an id) of a record that
        counts; None for one ignored (counted)."""
        metric = rec.metricName or rec.MetricName
        if metric:
            hit = self._metric_slots.get(metric)
            if hit is None:
                hit = self._metric_slot(metric)
            slot, role = hit
            if slot is None:
                ignored[role] = ignored.get(role, 0) + 1
                return None
            total = rec.total if rec.total is not None else rec.Total
            if total is None:
                raise Bad("schema", f"{metric} record without total")
            limit = self._max_metric
            if not (type(total) is float and 0.0 <= total <= limit):
                total = num(total, f"{metric} total", limit)
            counts = [0.0, 0.0, 0.0, 0.0, 0.0]
            counts[slot] = total
            dims = rec.dimension or rec.Dimension or rec.dimensions or rec.Dimensions
            if dims:
                d = {k.lower(): v for k, v in dims.items()}
                region = d.get("region") or location(rec)
                info = self._lookup(rec, region, d.get("modeldeploymentname", ""), d.get("modelname", ""))
            else:
                info = self._lookup(rec, location(rec), "", "")
            when = rec.time if rec.time is not None else rec.Time
            # Its identity: the hash of where it counts (its interned cell: account, region, deployment and model,
            # however the resource id is spelled), metric, grain, time and total — a record identical in all of
            # these is the same minute delivered again. (A 64-bit hash, not the fields: ~200,000 are remembered;
            # two different records share one with a chance of about 1 in 10^9 over that many.)
            grain = rec.timeGrain if rec.timeGrain is not None else rec.TimeGrain
            return when, info, counts, slot != 0 and total > 0, hash((info[0], metric, grain, when, total))
        props = rec.properties if rec.properties is not None else rec.Properties
        if isinstance(props, str):
            try:
                props = self._props_dec.decode(props) if props.strip() else None
            except msgspec.ValidationError:
                raise
            except msgspec.DecodeError as exc:
                raise Bad("malformed_json", f"properties is a string but not JSON: {exc}") from None
        if props is None:
            ignored["no_tokens"] = ignored.get("no_tokens", 0) + 1
            return None
        seq = props.sequenceNumber if props.sequenceNumber is not None else props.SequenceNumber
        if seq is not None and seq != 0.0 and num(seq, "sequenceNumber", math.inf) > 0:
            ignored["message_chunk"] = ignored.get("message_chunk", 0) + 1
            return None
        usage = self._usage(props)
        if usage is None:
            ignored["no_tokens"] = ignored.get("no_tokens", 0) + 1
            return None
        counts, model, deployment = usage
        region = (props.region if props.region is not None else props.Region) or location(rec)
        when = rec.time if rec.time is not None else rec.Time
        info = self._lookup(rec, region, deployment, model)
        return when, info, counts, True, request_identity(info[0], rec, props, when)

    def _usage(self, props: Any) -> tuple[list[float], str, str] | None:
        """A log's counts (one request), model and deployment; None when it reports no tokens."""
        # (each field camelCase, else PascalCase, as get reads them: written out, this runs for every request)
        prompt = props.promptTokens if props.promptTokens is not None else props.PromptTokens
        completion = props.completionTokens if props.completionTokens is not None else props.CompletionTokens
        total = props.totalTokens if props.totalTokens is not None else props.TotalTokens
        cached = props.promptCachedTokens if props.promptCachedTokens is not None else props.PromptCachedTokens
        model = (
            (props.modelName if props.modelName is not None else props.ModelName)
            or (props.model if props.model is not None else props.Model)
            or ""
        )
        deployment = (
            (props.deploymentName if props.deploymentName is not None else props.DeploymentName)
            or (props.modelDeploymentName if props.modelDeploymentName is not None else props.ModelDeploymentName)
            or ""
        )
        subset: bool | None = None  # cached tokens counted in the prompt's (None: decided below)
        if prompt is None and completion is None and total is None:
            usage = get(props, "usage")
            if usage is None and self.cfg.response_bodies:
                usage, body_model, url_deployment = self._body_usage(props)
                model, deployment = model or body_model, deployment or url_deployment
            if usage is None:
                return None
            prompt = usage.prompt_tokens if usage.prompt_tokens is not None else usage.input_tokens
            completion = usage.completion_tokens if usage.completion_tokens is not None else usage.output_tokens
            total = usage.total_tokens
            details = usage.prompt_tokens_details or usage.input_tokens_details
            cached = details.cached_tokens if details is not None else None
            subset = True  # OpenAI: prompt_tokens include prompt_tokens_details.cached_tokens
            if prompt is None and completion is None and total is None:
                return None
        limit = self._max_tokens
        # (num's common case written out: a count in range, or none)
        p = prompt if type(prompt) is float and 0.0 <= prompt <= limit else num_or_0(prompt, "prompt tokens", limit)
        c = (
            completion
            if type(completion) is float and 0.0 <= completion <= limit
            else num_or_0(completion, "completion tokens", limit)
        )
        t = total if type(total) is float and 0.0 <= total <= limit else num_or_0(total, "total tokens", limit)
        k = 0.0 if cached is None else num(cached, "cached tokens", limit)
        if p == c == t == k == 0.0:
            return None  # a gateway's probe or message record: no usage
        if subset is None:
            subset = not (k > p or (total is not None and k > 0 and t == p + c + k))
        if subset:
            if k > p:
                raise Bad("schema", f"cached tokens ({k:g}) exceed prompt tokens ({p:g})")
            p -= k
        only_total = t if prompt is None and completion is None else 0.0  # a total without a split
        return [1.0, p, c, k, only_total], model, deployment

    def _body_usage(self, props: Any) -> tuple[Any, str, str]:
        """``usage`` and ``model`` of a logged response body, the deployment from the URL (GatewayLogs)."""
        for name in ("responseBody", "backendResponseBody"):
            text = get(props, name)
            if not text:
                continue
            try:
                body = self._body_dec.decode(text)
            except msgspec.DecodeError:  # truncated, streamed (server-sent events) or not JSON: no usage to read
                continue
            if body.usage is not None:
                m = _DEPLOYMENT_IN_URL.search(get(props, "backendUrl") or get(props, "url") or "")
                return body.usage, body.model or "", m.group(1) if m else ""
        return None, "", ""

    def _metric_slot(self, metric: str) -> tuple[int | None, str]:
        """Where a metric counts (its slot and role), or (None, why it is ignored); remembered per name."""
        role = self._roles.get(metric.lower())
        if role is None:
            hit: tuple[int | None, str] = (
                None,
                "unselected_token_metric" if metric.lower() in METRIC_ROLES else "other_metric",
            )
        else:
            hit = (_SLOT[role], role)
        if len(self._metric_slots) < 1000:  # (names are few; a flood of made-up ones is not remembered)
            self._metric_slots[metric] = hit
        return hit

    def _lookup(self, rec: Any, region: str, deployment: str, model: str) -> _Info:
        key = ((rec.resourceId if rec.resourceId is not None else rec.ResourceId) or "", region, deployment, model)
        info = self._info.get(key)
        if info is None:
            info = self._make_info(key)
            if len(self._info) < 100_000:
                self._info[key] = info
        return info

    def _make_info(self, key: tuple[str, str, str, str]) -> _Info:
        rid, region, deployment, reported = key
        sub, rg, account = parse_resource_id(rid)
        model = (
            reported.strip()
            or self._deployments.get(deployment.lower())
            or self._deployments.get(account)
            or self.cfg.default_model
        )
        pairs = [
            ("provider", "azure"),
            ("service", "azure-openai"),
            ("billing_account", sub),
            ("resource_group", rg),
            ("account", account),
            ("region", region.lower().replace(" ", "")),
            ("deployment", deployment),
            ("model", model or UNKNOWN_MODEL),
            *self._const,
        ]
        c = cell(make_dims(pairs), SIGNALS)
        if not model:
            what, name = ("deployment", deployment) if deployment else ("account", account or UNKNOWN_MODEL)
            reason = (
                f"no model known for {what} {name!r}: map it in `deployments` or set `default_model`; "
                "tokens counted, cost not"
            )
            return c, 0.0, 0.0, 0.0, False, name, reason
        price = self.prices.lookup(model)
        if price is None:
            return c, 0.0, 0.0, 0.0, False, model, f"no price for model {model!r}; tokens counted, cost not"
        return c, price.input, price.output, price.cached_input, True, "", ""
