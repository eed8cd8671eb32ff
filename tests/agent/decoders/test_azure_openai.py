"""Azure OpenAI token usage from Azure Monitor records (Event Hubs envelopes, metric records, request logs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.decoders import bedrock
from agent.decoders.azure_openai import SIGNALS, AzureOpenAIConfig, AzureOpenAIDecoder, parse_resource_id
from agent.decoders.base import BLANK, DecodeContext
from agent.model import parse_time
from agent.pipeline import Agent
from agent.state import MemoryStateStore
from tests.conftest import shared_data

SUB = "5f0a3c1e-7b2d-4e8f-9a61-0c4d2b7e9f13"
# Azure upper-cases the resource id of diagnostic records.
RG = f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS"
ACCOUNT_ID = f"{RG}/RG-AI-PROD/PROVIDERS/MICROSOFT.COGNITIVESERVICES/ACCOUNTS/OAI-PROD"
APIM_ID = f"{RG}/RG-GATEWAY/PROVIDERS/MICROSOFT.APIMANAGEMENT/SERVICE/AI-GATEWAY"
SAMPLE = ("eventhubs", "azure-monitor-metrics-records.json")
T0 = "2025-07-14T12:45:00.0000000Z"  # Azure writes 7 fractional digits
GPT4O = (2.5e-6, 10e-6, 1.25e-6)  # $/token: input, output, cached input (bundled table)
GPT4O_MINI = (0.15e-6, 0.6e-6, 0.075e-6)


def metric(name: str, total: float | str, time: str = T0, grain: str = "PT1M", **over: Any) -> dict[str, Any]:
    """A metric record as a diagnostic setting streams it (no dimensions)."""
    rec: dict[str, Any] = {
        "count": 4,
        "total": total,
        "minimum": 0,
        "maximum": total,
        "average": total,
        "resourceId": ACCOUNT_ID,
        "time": time,
        "metricName": name,
        "timeGrain": grain,
    }
    rec.update(over)
    return rec


def envelope(*records: Any) -> bytes:
    return orjson.dumps({"records": list(records)})


def llm_log(props: dict[str, Any] | str, time: str = "2025-07-14T12:46:10.1234567Z", **over: Any) -> dict[str, Any]:
    """An API Management GatewayLlmLogs record (token columns as the ApiManagementGatewayLlmLog table names them)."""
    rec: dict[str, Any] = {
        "time": time,
        "resourceId": APIM_ID,
        "operationName": "Microsoft.ApiManagement/GatewayLlmLogs",
        "category": "GatewayLlmLogs",
        "location": "West Europe",
        "properties": props,
    }
    rec.update(over)
    return rec


def decoder(**cfg: Any) -> AzureOpenAIDecoder:
    return AzureOpenAIDecoder(AzureOpenAIConfig(type="azure_openai", **cfg))


def ctx(**kw: Any) -> DecodeContext:
    return DecodeContext("t", bucket_seconds=60, **kw)


def by(obs: list[Any], dim: str) -> dict[str, Any]:
    return {dict(o.dims).get(dim, ""): o for o in obs}


def values(o: Any) -> dict[str, float]:
    return dict(zip(o.signals, o.values, strict=True))


def test_the_shared_sample_is_an_envelope_whose_other_metric_is_ignored() -> None:
    raw = shared_data().joinpath(*SAMPLE).read_bytes()
    dec = decoder()
    # The whole (pretty-printed) event body is one message, as Event Hubs hands it over; and compacted to one line.
    for message in (raw, orjson.dumps(orjson.loads(raw))):
        obs, bad = dec.decode_lines([message], ctx())
        assert (obs, bad) == ([], [])
    assert dec.ignored_records() == {"other_metric": 2}
    # The same envelope with this decoder's metrics in it: the other metric still costs nothing.
    doc = orjson.loads(raw)
    doc["records"].append(metric("InputTokens", 1000, time=doc["records"][0]["time"]))
    obs, bad = decoder(default_model="gpt-4o").decode_lines([orjson.dumps(doc)], ctx())
    assert bad == [] and [values(o)["input_tokens"] for o in obs] == [1000]


def test_metric_records_become_tokens_requests_and_cost_per_account() -> None:
    line = envelope(
        metric("InputTokens", 12000),
        metric("OutputTokens", 3000),
        metric("ModelRequests", 10),
        metric("InputTokens", 8000, time="2025-07-14T12:45:30Z"),  # same minute: summed
        metric("ProcessedPromptTokens", 20000),  # the legacy family measures the same calls: not counted
        metric("TokenTransaction", 23000),
        metric("TotalTokens", 23000),
        metric("AzureOpenAIRequests", 10),
    )
    dec = decoder(deployments={"oai-prod": "gpt-4o"})
    c = ctx()
    obs, bad = dec.decode_lines([line], c)
    assert bad == []
    assert len(obs) == 1
    o = obs[0]
    assert o.signals == SIGNALS == bedrock.SIGNALS
    assert o.ts == parse_time("2025-07-14T12:45:00Z")
    v = values(o)
    assert (v["requests"], v["input_tokens"], v["output_tokens"], v["cached_input_tokens"], v["tokens"]) == (
        10,
        20000,
        3000,
        0,
        23000,
    )
    assert v["token_cost_usd"] == pytest.approx(20000 * GPT4O[0] + 3000 * GPT4O[1])
    assert dict(o.dims) == {
        "provider": "azure",
        "service": "azure-openai",
        "billing_account": SUB,
        "resource_group": "rg-ai-prod",
        "account": "oai-prod",
        "model": "gpt-4o",
    }
    assert dec.ignored_records() == {"unselected_token_metric": 4}
    assert c.max_event_time == parse_time("2025-07-14T12:45:30Z")
    # An Event Hubs source that unpacks the envelope hands over one record a line: the same observations.
    unpacked = [orjson.dumps(r) for r in orjson.loads(line)["records"]]
    assert decoder(deployments={"oai-prod": "gpt-4o"}).decode_lines(unpacked, ctx()) == (obs, [])


def test_the_legacy_metric_family_and_totals_are_chosen_by_token_metrics() -> None:
    line = envelope(
        metric("ProcessedPromptTokens", 5000),
        metric("GeneratedTokens", 1000),
        metric("AzureOpenAIRequests", 4),
        metric("InputTokens", 5000),
        metric("TokenTransaction", 6000),
    )
    legacy = decoder(
        token_metrics=["ProcessedPromptTokens", "GeneratedTokens", "AzureOpenAIRequests"], default_model="gpt-4o"
    )
    (o,), bad = legacy.decode_lines([line], ctx())
    assert bad == [] and values(o)["input_tokens"] == 5000 and values(o)["output_tokens"] == 1000
    assert values(o)["requests"] == 4 and values(o)["tokens"] == 6000
    # A total alone: tokens counted, no split to price (and no dead letters: it is the configured choice).
    total = decoder(token_metrics=["TokenTransaction", "AzureOpenAIRequests"], default_model="gpt-4o")
    (o,), bad = total.decode_lines([line], ctx())
    assert bad == []
    assert values(o) == {
        "requests": 4,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "tokens": 6000,
        "token_cost_usd": 0,
        "cache_savings_usd": 0,
    }


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (["InputTokens", "ProcessedPromptTokens"], "both count input_tokens"),
        (["ModelRequests", "AzureOpenAIRequests"], "both count requests"),
        (["InputTokens", "OutputTokens", "TotalTokens"], "every token would count twice"),
        (["TokenTransaction", "GeneratedTokens"], "every token would count twice"),
        (["InputTokenz"], "is not a token or request metric"),
    ],
)
def test_a_config_that_would_count_tokens_twice_is_refused(metrics: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AzureOpenAIConfig(type="azure_openai", token_metrics=metrics)


def test_constant_dimensions_cannot_replace_the_decoders_own() -> None:
    with pytest.raises(ValidationError, match="model: set by the decoder"):
        AzureOpenAIConfig(type="azure_openai", constant_dimensions={"model": "x"})
    dec = decoder(default_model="gpt-4o", constant_dimensions={"environment": "prod"})
    (o,), _ = dec.decode_lines([envelope(metric("InputTokens", 1))], ctx())
    assert dict(o.dims)["environment"] == "prod"
    emits = AzureOpenAIDecoder.emits(dec.cfg)
    assert emits.signals == frozenset(SIGNALS)
    assert emits.dimensions is not None and {"account", "deployment", "model", "environment"} <= emits.dimensions


def test_an_hourly_record_lands_whole_at_the_start_of_its_grain() -> None:
    c = ctx()
    obs, bad = decoder(default_model="gpt-4o").decode_lines(
        [envelope(metric("OutputTokens", 600000, time="2025-07-14T13:00:00.0000000Z", grain="PT1H"))], c
    )
    assert bad == [] and [o.ts for o in obs] == [parse_time("2025-07-14T13:00:00Z")]
    assert c.max_event_time == parse_time("2025-07-14T13:00:00Z")  # the grain's start, not its end


def test_data_collection_rule_exports_carry_dimensions_and_string_aggregates() -> None:
    # The metrics export of a data collection rule: one record per event, lower-case resource id, capitalised
    # aggregates as strings, and a `dimension` map.
    rec = {
        "Average": "210.5",
        "Count": "2",
        "Maximum": "400",
        "Minimum": "21",
        "Total": "421",
        "resourceId": ACCOUNT_ID.lower(),
        "time": "2025-07-14T12:45:00.0000000Z",
        "unit": "Count",
        "metricName": "InputTokens",
        "timeGrain": "PT1M",
        "dimension": {"ModelDeploymentName": "chat", "ModelName": "gpt-4o-mini", "Region": "swedencentral"},
    }
    # The account's map entry names the model of the account's records without dimensions, not of those that
    # report their own.
    dec = decoder(deployments={"oai-prod": "gpt-4o"})
    obs, bad = dec.decode_lines([orjson.dumps(rec), envelope(metric("InputTokens", 79))], ctx())
    assert bad == []
    assert values(by(obs, "model")["gpt-4o"])["input_tokens"] == 79
    o = by(obs, "model")["gpt-4o-mini"]
    dims = dict(o.dims)
    assert (dims["deployment"], dims["model"], dims["region"], dims["account"]) == (
        "chat",
        "gpt-4o-mini",
        "swedencentral",
        "oai-prod",
    )
    assert values(o)["input_tokens"] == 421 and values(o)["token_cost_usd"] == pytest.approx(421 * GPT4O_MINI[0])


def test_upper_and_lower_case_resource_ids_are_one_series() -> None:
    lines = [envelope(metric("InputTokens", 100)), envelope(metric("InputTokens", 50, resourceId=ACCOUNT_ID.lower()))]
    obs, bad = decoder(default_model="gpt-4o").decode_lines(lines, ctx())
    assert bad == [] and len(obs) == 1 and values(obs[0])["input_tokens"] == 150


def test_gateway_llm_logs_with_properties_as_object_and_as_string() -> None:
    pascal = {
        "PromptTokens": 1200,
        "CompletionTokens": 300,
        "TotalTokens": 1500,
        "ModelName": "gpt-4o-2024-08-06",
        "DeploymentName": "chat",
        "Region": "West Europe",
        "SequenceNumber": 0,
        "CorrelationId": "c-1",
    }
    camel = {
        "promptTokens": 800,
        "completionTokens": 200,
        "totalTokens": 1000,
        "promptCachedTokens": 500,  # part of the prompt's 800: 300 uncached
        "modelName": "gpt-4o-2024-08-06",
        "deploymentName": "chat",
        "correlationId": "c-2",
    }
    chunks = [  # the same request's prompt and completion messages: no tokens to count
        llm_log({"SequenceNumber": 1, "CorrelationId": "c-1", "RequestMessages": [{"role": "user", "content": "hi"}]}),
        llm_log({"SequenceNumber": 2, "CorrelationId": "c-1", "PromptTokens": 1200, "CompletionTokens": 300}),
        llm_log({"CorrelationId": "c-3", "PromptTokens": 0, "CompletionTokens": 0, "ModelName": ""}),  # a probe
    ]
    line = envelope(llm_log(pascal), llm_log(orjson.dumps(camel).decode()), *chunks)
    dec = decoder()
    (o,), bad = dec.decode_lines([line], ctx())
    assert bad == []
    assert o.ts == parse_time("2025-07-14T12:46:00Z")
    v = values(o)
    assert (v["requests"], v["input_tokens"], v["output_tokens"], v["cached_input_tokens"], v["tokens"]) == (
        2,
        1200 + 300,
        500,
        500,
        2500,
    )
    assert v["token_cost_usd"] == pytest.approx(1500 * GPT4O[0] + 500 * GPT4O[1] + 500 * GPT4O[2])
    dims = dict(o.dims)
    assert (dims["account"], dims["resource_group"], dims["region"]) == ("ai-gateway", "rg-gateway", "westeurope")
    assert (dims["deployment"], dims["model"]) == ("chat", "gpt-4o-2024-08-06")
    assert dec.ignored_records() == {"message_chunk": 2, "no_tokens": 1}


def test_cache_reads_reported_beside_the_prompt_are_not_subtracted_from_it() -> None:
    # An Anthropic model behind the gateway: the prompt's 26 tokens exclude the 48,854 read from the cache.
    props = {"promptTokens": 26, "completionTokens": 400, "promptCachedTokens": 48854, "modelName": "gpt-4o"}
    (o,), bad = decoder().decode_lines([orjson.dumps(llm_log(props))], ctx())
    assert bad == []
    v = values(o)
    assert (v["input_tokens"], v["cached_input_tokens"], v["tokens"]) == (26, 48854, 26 + 400 + 48854)


def test_request_logs_with_a_usage_block_and_logs_without_tokens() -> None:
    # Shapes recorded from Azure OpenAI diagnostic settings (RequestResponse with properties as a string and as an
    # object, Audit): they carry no token counts and are ignored, not bad.
    request_response = {
        "Tenant": "eastus",
        "callerIpAddress": "81.2.69.***",
        "category": "RequestResponse",
        "correlationId": "d427a391-2bc7-4f38-9cbc-6560600e0981",
        "durationMs": 1021,
        "event": "ShoeboxCallResult",
        "location": "eastus",
        "operationName": "ChatCompletions_Create",
        "properties": {
            "apiName": "Azure OpenAI API version 2024-02-15-preview",
            "requestTime": 638515262815394150,
            "requestLength": 128,
            "responseTime": 638515262825606520,
            "responseLength": 1411,
            "objectId": "",
            "streamType": "Non-Streaming",
            "modelDeploymentName": "gpt-chat-pilot",
            "modelName": "gpt-35-turbo",
            "modelVersion": "0301",
        },
        "resourceId": ACCOUNT_ID,
        "resultSignature": "200",
        "time": "2024-05-24T12:23:02.4350000Z",
    }
    as_string = dict(request_response, properties=orjson.dumps(request_response["properties"]).decode())
    audit = {
        "category": "Audit",
        "operationName": "ListKey",
        "properties": {"objectId": "b610ab05-ce06-4cc1-a6dd-174b9f80468a"},
        "resourceId": ACCOUNT_ID,
        "time": "2024-04-17T06:03:30.0000000Z",
    }
    # A log shape with an OpenAI usage block (prompt tokens include the cached ones).
    usage = dict(
        request_response,
        properties={
            "modelDeploymentName": "mini",
            "model": "gpt-4o-mini-2024-07-18",
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 100,
                "total_tokens": 2100,
                "prompt_tokens_details": {"cached_tokens": 1536},
            },
        },
    )
    responses_api = dict(
        usage,
        correlationId="5b0c7a1e-0000-4000-8000-000000000001",  # another call
        properties={"model": "gpt-4o-mini", "usage": {"input_tokens": 10, "output_tokens": 5}},
    )
    dec = decoder()
    lines = [envelope(request_response, as_string, audit, usage), orjson.dumps(responses_api)]
    obs, bad = dec.decode_lines(lines, ctx())
    assert bad == []
    assert dec.ignored_records() == {"no_tokens": 3}
    o = by(obs, "deployment")["mini"]
    v = values(o)
    assert (v["requests"], v["input_tokens"], v["cached_input_tokens"], v["output_tokens"]) == (1, 464, 1536, 100)
    assert v["token_cost_usd"] == pytest.approx(464 * GPT4O_MINI[0] + 100 * GPT4O_MINI[1] + 1536 * GPT4O_MINI[2])
    assert dict(o.dims)["region"] == "eastus" and dict(o.dims)["model"] == "gpt-4o-mini-2024-07-18"
    assert values(by(obs, "deployment")[""])["tokens"] == 15


def test_response_bodies_of_gateway_logs_are_read_only_when_asked() -> None:
    body = {"id": "chatcmpl-1", "model": "gpt-35-turbo", "usage": {"completion_tokens": 8, "prompt_tokens": 14}}
    gateway = {
        "category": "GatewayLogs",
        "operationName": "Microsoft.ApiManagement/GatewayLogs",
        "location": "East US",
        "resourceId": APIM_ID,
        "time": "2024-07-02T06:31:31.4465902Z",
        "properties": {
            "backendUrl": "https://oai.openai.azure.com/openai/deployments/gpt-chat-pilot/chat/completions?api-version=1",
            "responseBody": orjson.dumps(body).decode() + "\n",
            "backendResponseBody": orjson.dumps(body).decode(),
        },
    }
    streamed = dict(gateway, properties={"responseBody": 'data: {"choices": []}\n\ndata: [DONE]'})
    truncated = dict(gateway, properties={"responseBody": orjson.dumps(body).decode()[:30]})
    line = envelope(gateway, streamed, truncated)
    plain = decoder()
    assert plain.decode_lines([line], ctx()) == ([], []) and plain.ignored_records() == {"no_tokens": 3}
    dec = decoder(response_bodies=True)
    (o,), bad = dec.decode_lines([line], ctx())
    assert bad == []
    assert (values(o)["requests"], values(o)["input_tokens"], values(o)["output_tokens"]) == (1, 14, 8)
    assert dict(o.dims)["deployment"] == "gpt-chat-pilot" and dict(o.dims)["model"] == "gpt-35-turbo"
    assert dec.ignored_records() == {"no_tokens": 2}


def test_the_deployment_map_default_model_and_unknown_or_unpriced_models() -> None:
    lines = [
        # No model for the account (a minute without output, 0, has no tokens to price: not reported).
        envelope(metric("InputTokens", 1000), metric("ModelRequests", 3), metric("OutputTokens", 0)),
        orjson.dumps(llm_log({"PromptTokens": 50, "CompletionTokens": 5, "DeploymentName": "Batch-Summaries"})),
        orjson.dumps(llm_log({"PromptTokens": 70, "CompletionTokens": 7, "ModelName": "acme-finetune-v2"})),
    ]
    dec = decoder(deployments={"batch-summaries": "gpt-4o-mini"})  # names match in any case
    obs, bad = dec.decode_lines(lines, ctx())
    models = by(obs, "model")
    # Unknown: tokens counted, cost not, and a partial dead letter per token record naming what to map.
    unknown = values(models["(unknown)"])
    assert (unknown["requests"], unknown["input_tokens"], unknown["token_cost_usd"]) == (3, 1000, 0)
    finetune = values(models["acme-finetune-v2"])
    assert (finetune["tokens"], finetune["token_cost_usd"]) == (77, 0)
    mapped = values(models["gpt-4o-mini"])
    assert mapped["token_cost_usd"] == pytest.approx(50 * GPT4O_MINI[0] + 5 * GPT4O_MINI[1])
    assert sorted((b.kind, b.partial, b.subject) for b in bad) == [
        ("unknown_model", True, "acme-finetune-v2"),
        ("unknown_model", True, "oai-prod"),  # the requests record carries no tokens: not reported
    ]
    assert "`deployments`" in next(b.reason for b in bad if b.subject == "oai-prod")
    assert orjson.loads(next(b.raw for b in bad if b.subject == "oai-prod"))["metricName"] == "InputTokens"
    assert dec.prices_unknown() == {"oai-prod": 1, "acme-finetune-v2": 1}
    # A default model prices what nothing else names.
    (o,), bad = decoder(default_model="gpt-4o").decode_lines(lines[:1], ctx())
    assert bad == [] and values(o)["token_cost_usd"] == pytest.approx(1000 * GPT4O[0])


def test_bad_records_inside_an_envelope_cost_only_themselves() -> None:
    good, good2, good3, good4, good5 = (metric("InputTokens", 1000, time=f"2025-07-14T12:4{m}:00Z") for m in range(5))
    inner = [
        5,  # not a record
        metric("InputTokens", "lots"),  # not a number
        metric("InputTokens", -3),
        metric("InputTokens", 1e13),  # over max_metric_value
        metric("InputTokens", "NaN"),
        metric("OutputTokens", None),  # no total
        metric("InputTokens", 1, time="yesterday"),
        metric("InputTokens", 1, time=None),
        metric("InputTokens", 1, time="1999-01-01T00:00:00Z"),
        {**good, "metricName": 5},  # wrong type
        {**good, "dimension": {"ModelName": 4}},
        llm_log("{not json"),
        llm_log(7),
        llm_log({"PromptTokens": 20_000_000, "CompletionTokens": 1}),  # over max_tokens_per_record
        llm_log({"PromptTokens": True}),
        llm_log({"model": "gpt-4o", "usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}}),
        good,
    ]
    lines = [
        envelope(*inner),
        b'{"records": [' + orjson.dumps(good2) + b", 1e400]}",  # a number no float holds: that record alone
        b'{"records": 5}',  # not a list: the message is bad
        b'{"records": [{"time": ',  # truncated
        b"\xff\xfe not json",
        b"   ",
        b"\xef\xbb\xbf" + envelope(good3),  # a byte-order mark is harmless
        orjson.dumps([good4, good5]),  # a bare array of records
    ]
    c = ctx(min_ts=parse_time("2020-01-01T00:00:00Z"), max_ts=parse_time("2030-01-01T00:00:00Z"))
    obs, bad = decoder(default_model="gpt-4o").decode_lines(lines, c)
    assert sum(values(o)["input_tokens"] for o in obs) == 5 * 1000
    kinds = sorted(b.kind for b in bad)
    assert kinds == sorted(
        [
            "schema",
            "schema",
            "negative_value",
            "absurd_value",
            "absurd_value",
            "schema",
            "schema",
            "schema",
            "timestamp_out_of_range",
            "schema",
            "schema",
            "malformed_json",
            "schema",
            "absurd_value",
            "schema",
            "schema",
            "absurd_value",
            "schema",
            "malformed_json",
            "malformed_json",
            BLANK,
        ]
    ), [(b.kind, b.reason) for b in bad]
    # A bad record of an envelope is reported with its own JSON, not the whole message.
    for b in bad[:16]:
        assert b.raw in lines[0] and b.raw != lines[0]
        assert orjson.loads(b.raw) in [orjson.loads(orjson.dumps(r)) for r in inner]
    assert bad[16].raw == b"1e400"
    assert [b.raw for b in bad[17:]] == lines[2:6]
    reasons = {b.reason for b in bad}
    assert "OutputTokens record without total" in reasons
    assert any("cached tokens (11) exceed prompt tokens (10)" in r for r in reasons)


def test_late_records_keep_their_own_bytes() -> None:
    early, later = metric("InputTokens", 5, time="2025-07-14T10:15:00Z"), metric("InputTokens", 7)
    obs, bad = decoder(default_model="gpt-4o").decode_lines(
        [envelope(early, later)], ctx(late_before=parse_time("2025-07-14T11:00:00Z"))
    )
    assert [b.kind for b in bad] == ["late"] and orjson.loads(bad[0].raw) == early
    assert [values(o)["input_tokens"] for o in obs] == [7]


def test_a_metric_record_delivered_twice_counts_once() -> None:
    # Event Hubs delivers at least once: the same envelope again (a re-sent batch), and a record repeated inside
    # one message, count once; the copies are counted as ignored duplicates, not as bad input.
    dec = decoder(default_model="gpt-4o")
    first = envelope(metric("InputTokens", 1000), metric("OutputTokens", 200))
    obs, bad = dec.decode_lines([first], ctx())
    assert bad == [] and sum(values(o)["input_tokens"] for o in obs) == 1000
    obs, bad = dec.decode_lines([first, envelope(metric("InputTokens", 5, time="2025-07-14T12:46:00Z"))], ctx())
    assert bad == [] and [values(o)["input_tokens"] for o in obs] == [5]
    assert dec.ignored_records()["duplicate_record"] == 2
    same_message = envelope(*[metric("InputTokens", 9, time="2025-07-14T12:47:00Z")] * 2)
    obs, _bad = dec.decode_lines([same_message], ctx())
    assert [values(o)["input_tokens"] for o in obs] == [9] and dec.ignored_records()["duplicate_record"] == 3


def test_a_request_log_delivered_twice_counts_once_by_its_correlation_id() -> None:
    """New-user review: API Management GatewayLlmLogs re-sent by Event Hubs were counted twice ($1.456 for $1.399).
    A request log with a correlation (or request) id counts once; one without an id is never merged."""
    props = {"PromptTokens": 1000, "CompletionTokens": 100, "ModelName": "gpt-4o", "DeploymentName": "chat"}
    call = llm_log(props, correlationId="c-1")
    other = llm_log(props, correlationId="c-2")
    in_props = llm_log({**props, "CorrelationId": "c-3"}, time="2025-07-14T12:46:11.0000000Z")
    anonymous = llm_log(props, time="2025-07-14T12:46:12.0000000Z")
    dec = decoder()
    lines = [envelope(call, other, in_props, anonymous), envelope(call, in_props, anonymous)]
    obs, bad = dec.decode_lines(lines, ctx())
    assert bad == [] and sum(values(o)["requests"] for o in obs) == 5  # c-1, c-2, c-3 once; the anonymous twice
    assert dec.ignored_records() == {"duplicate_record": 2}


def test_records_of_one_minute_that_differ_are_not_duplicates() -> None:
    # A data collection rule's export: one record per deployment in the same minute; another total, grain or
    # resource is another record (its spelling — "421" or 421, upper- or lower-case resource id — is not).
    def dcr(deployment: str, total: Any, rid: str = ACCOUNT_ID) -> dict[str, Any]:
        return metric("InputTokens", total, resourceId=rid, dimension={"ModelDeploymentName": deployment})

    dec = decoder(default_model="gpt-4o")
    obs, bad = dec.decode_lines(
        [envelope(dcr("chat", 421), dcr("batch", 421), dcr("chat", 422), metric("InputTokens", 421, grain="PT1H"))],
        ctx(),
    )
    assert bad == [] and sum(values(o)["input_tokens"] for o in obs) == 421 * 3 + 422
    obs, _bad = dec.decode_lines([envelope(dcr("chat", "421", rid=ACCOUNT_ID.lower()))], ctx())
    assert obs == [] and dec.ignored_records() == {"duplicate_record": 1}


def test_a_copy_arriving_after_its_minute_is_sealed_is_late_and_the_memory_is_freed() -> None:
    dec = decoder(default_model="gpt-4o")
    rec = metric("InputTokens", 1000)
    dec.decode_lines([envelope(rec)], ctx())
    assert len(dec._seen) == 1
    sealed = ctx(late_before=parse_time("2025-07-14T12:50:00Z"))
    obs, bad = dec.decode_lines([envelope(rec, metric("InputTokens", 3, time="2025-07-14T12:51:00Z"))], sealed)
    assert [b.kind for b in bad] == ["late"] and [values(o)["input_tokens"] for o in obs] == [3]
    assert "duplicate_record" not in dec.ignored_records()
    assert len(dec._seen) == 1  # only the 12:51 record's identity: the sealed minute's is forgotten


def test_resource_ids_and_sniffing() -> None:
    assert parse_resource_id(ACCOUNT_ID) == (SUB, "rg-ai-prod", "oai-prod")
    assert parse_resource_id(ACCOUNT_ID + "/PROJECTS/P1") == (SUB, "rg-ai-prod", "oai-prod")
    assert parse_resource_id("") == ("", "", "")
    assert AzureOpenAIDecoder.sniff(envelope(metric("InputTokens", 1)))
    assert AzureOpenAIDecoder.sniff(orjson.dumps(llm_log({"PromptTokens": 1})))
    assert not AzureOpenAIDecoder.sniff(shared_data().joinpath(*SAMPLE).read_bytes())  # App Insights metrics


def _hour(h: int) -> str:
    return f"2026-03-02T{h:02d}:00:00.0000000Z"


def test_end_to_end_a_token_spend_spike_from_event_hubs_envelopes_alerts(tmp_path: Path) -> None:
    """An agent reading envelopes (one per line, as an Event Hubs source hands them over): hourly token metrics of
    one account, one hour of runaway spend, request logs through the gateway, and a bad record inside an envelope."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = []
    for h in range(8):
        tin, tout = (2_000_000, 500_000) if h == 5 else (100_000, 20_000)  # $10 in hour 5, else $0.45
        lines.append(
            envelope(
                metric("InputTokens", tin, time=_hour(h), grain="PT1H"),
                metric("OutputTokens", tout, time=_hour(h), grain="PT1H"),
                metric("ModelRequests", 40, time=_hour(h), grain="PT1H"),
                metric("dependencies/duration", 12292.1382, time=_hour(h), grain="PT1H"),
            )
        )
    bad_record = metric("OutputTokens", -1, time=_hour(3), grain="PT1H")
    lines.append(envelope(bad_record, llm_log({"PromptTokens": 100, "CompletionTokens": 10}, time=_hour(2))))
    (inbox / "aoai.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    dlq = tmp_path / "dlq.jsonl"
    cfg = f"""
sources:
  aoai:
    type: file
    path: {inbox}
    decoder:
      type: azure_openai
      deployments: {{OAI-PROD: gpt-4o, ai-gateway: gpt-4o-mini}}
detectors:
  token_spend:
    type: threshold
    signal: token_cost_usd
    upper: 5.0
    group_by: [account]
    contributors_by: [model]
    window_seconds: 3600
    min_impact_usd: 1
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dlq}}}
pipeline: {{max_age_days: 3650}}
"""
    collector = PointCollector()
    agent = Agent(load_config_text(cfg), extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    try:
        assert agent.wait_finished(60)
    finally:
        agent.stop(flush_windows=True)
    assert agent.error is None
    spend = {
        (dict(p.series)["account"], p.window_start): p.observed
        for (det, _s), ps in collector.points.items()
        if det == "token_spend"
        for p in ps
        if not p.early
    }
    hour = parse_time(_hour(0))
    assert spend[("oai-prod", hour + 5 * 3600)] == pytest.approx(2_000_000 * GPT4O[0] + 500_000 * GPT4O[1])
    assert spend[("oai-prod", hour)] == pytest.approx(100_000 * GPT4O[0] + 20_000 * GPT4O[1])
    assert spend[("ai-gateway", hour + 2 * 3600)] == pytest.approx(100 * GPT4O_MINI[0] + 10 * GPT4O_MINI[1])
    # (The gateway's single hour also raises a data gap afterwards: its own kind of alert.)
    firing = [d for d in collector.alerts if d["status"] == "firing" and d["kind"] == "spend"]
    assert len(firing) == 1, collector.alerts
    assert firing[0]["series"] == {"account": "oai-prod"}
    assert firing[0]["window_start"] == "2026-03-02T05:00:00Z"
    dead = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    assert [(d["kind"], orjson.loads(d["original"])) for d in dead] == [("negative_value", bad_record)]
    assert math.isclose(sum(p for (a, _w), p in spend.items() if a == "oai-prod"), 7 * 0.45 + 10.0)
