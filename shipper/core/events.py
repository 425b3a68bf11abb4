"""Event Grid deliveries: two wire schemas in, one event model out. Pure: no I/O, no clock.

    Event Grid schema    `application/json`: a JSON array of
                         {id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion}
    CloudEvents 1.0      structured mode: `application/cloudevents+json` (one event) or
                         `application/cloudevents-batch+json` (an array) of
                         {specversion, id, source, type, time, subject, data | data_base64, ...};
                         binary mode: `ce-*` headers, the body is the data

The subscription validation handshake of the Event Grid schema arrives as a delivery of one
`Microsoft.EventGrid.SubscriptionValidationEvent`; `Delivery.validation_code` carries its code.

`InvalidPayload` is raised for a body that can never be accepted however often it is sent (not
JSON, wrong shape, too many events, or no event of it readable). It lists every problem found, so
the dead letter says all that is wrong at once. A batch in which only some events are unreadable
(without id, type or a readable time) is not refused: `Delivery.invalid` holds those, each with
its problems and its original, and `Delivery.events` the good ones.

Inputs that are valid JSON but cannot be stored as they are (see docs/webhook-input.md):

    lone UTF-16 surrogates      (`"\\ud800"`, in any key or string) the event is unreadable
    nesting beyond MAX_DEPTH    levels (the bulk serialiser stops at 254) the event is unreadable
    numbers beyond a double     (hundreds of digits, `1e400`) kept as their JSON text, a string
    times that leave the UTC    range (year 9999 with a negative offset, year 1 with a positive one)
                                the event time is unreadable; a time inside `data` is left out
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
AZUREML_PREFIX = "Microsoft.MachineLearningServices."

# The Azure ML event types the shipper reads; others are kept as they came.
RUN_STATUS_CHANGED = AZUREML_PREFIX + "RunStatusChanged"
RUN_COMPLETED = AZUREML_PREFIX + "RunCompleted"
MODEL_REGISTERED = AZUREML_PREFIX + "ModelRegistered"
MODEL_DEPLOYED = AZUREML_PREFIX + "ModelDeployed"
DATASET_DRIFT_DETECTED = AZUREML_PREFIX + "DatasetDriftDetected"
KNOWN_TYPES = (RUN_STATUS_CHANGED, RUN_COMPLETED, MODEL_REGISTERED, MODEL_DEPLOYED, DATASET_DRIFT_DETECTED)

Schema = Literal["EventGridEvent", "CloudEvent"]

MAX_PROBLEMS = 20
# Levels of nesting (objects and arrays) an event may have: its document stores it two levels
# down (`mlops.raw`), and the bulk serialiser (orjson) stops at 254.
MAX_DEPTH = 252

_WORKSPACE_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)(?:/.*)?$",
    re.IGNORECASE,
)


class InvalidPayload(ValueError):
    """A delivery that can never succeed. `problems` names each defect and where it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems[:MAX_PROBLEMS]
        more = len(problems) - len(self.problems)
        text = "; ".join(self.problems) + (f"; and {more} more" if more > 0 else "")
        super().__init__(text)


@dataclass(frozen=True)
class Workspace:
    """An Azure ML workspace, from a resource id such as an event's topic."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )


@functools.lru_cache(maxsize=1024)
def parse_workspace(resource_id: str | None) -> Workspace | None:
    """`/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/
    workspaces/<ws>[/...]` -> Workspace; anything else -> None."""
    if not resource_id:
        return None
    match = _WORKSPACE_RE.match(resource_id.strip())
    if match is None:
        return None
    return Workspace(match["sub"], match["rg"], match["ws"])


def normalise_topic(topic: str) -> str:
    """Resource ids compare case-insensitively, without a trailing slash."""
    return topic.strip().rstrip("/").lower()


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    # None only for a CloudEvent without `time` (the attribute is optional there).
    time: datetime | None
    source: str
    subject: str | None
    data: Any
    schema: Schema
    raw: dict[str, Any] = field(repr=False)
    data_version: str | None = None
    # Its place in the delivery (0 for a single or binary-mode CloudEvent).
    position: int = 0

    @property
    def short_type(self) -> str:
        """`Microsoft.MachineLearningServices.RunStatusChanged` -> `RunStatusChanged`."""
        return self.type.rsplit(".", 1)[-1] if self.type.startswith(AZUREML_PREFIX) else self.type

    @property
    def workspace(self) -> Workspace | None:
        return parse_workspace(self.source)


@dataclass(frozen=True)
class InvalidEvent:
    """One event of a batch that can never be accepted, beside good ones: it is dead-lettered with
    `raw` (the item as it came) while the good events of its batch are written."""

    position: int
    problems: list[str]
    raw: Any
    # The dead letter's `error.type`.
    kind: str = "invalid_payload"


@dataclass(frozen=True)
class Delivery:
    schema: Schema
    events: list[Event]
    validation_code: str | None = None
    validation_url: str | None = None
    invalid: list[InvalidEvent] = field(default_factory=list)

    @property
    def is_validation(self) -> bool:
        return self.validation_code is not None


def parse_time(value: Any) -> datetime:
    """An RFC 3339 time (Event Grid writes 7 fractional digits) -> an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not a time string")
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    # More than 6 fractional digits: Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value[:64]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is in the year 10000 in UTC
        raise ValueError(f"{value[:64]!r} is outside the years 1970 to 9999 once converted to UTC") from None
    if moment.year < 1970:
        raise ValueError(f"{value[:64]!r} is before 1970")
    return moment


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _string(event: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: `{key}` is missing or not a non-empty string")
        return ""
    return value


def _optional_string(event: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = event.get(key)
    if value is not None and not isinstance(value, str):
        problems.append(f"{where}: `{key}` is not a string")
        return None
    return value


def _eventgrid_event(raw: Any, where: str, problems: list[str], position: int = 0) -> Event | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: is not a JSON object")
        return None
    before = len(problems)
    event_id = _string(raw, "id", where, problems)
    event_type = _string(raw, "eventType", where, problems)
    moment: datetime | None = None
    try:
        moment = parse_time(raw.get("eventTime"))
    except ValueError as exc:
        problems.append(f"{where}: `eventTime` {exc}")
    topic = _optional_string(raw, "topic", where, problems) or ""
    subject = _optional_string(raw, "subject", where, problems)
    data_version = _optional_string(raw, "dataVersion", where, problems)
    if len(problems) > before:
        return None
    return Event(
        event_id,
        event_type,
        moment,
        topic,
        subject,
        raw.get("data"),
        "EventGridEvent",
        raw,
        data_version,
        position,
    )


def _cloud_event(raw: Any, where: str, problems: list[str], position: int = 0) -> Event | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: is not a JSON object")
        return None
    before = len(problems)
    event_id = _string(raw, "id", where, problems)
    event_type = _string(raw, "type", where, problems)
    source = _string(raw, "source", where, problems)
    version = raw.get("specversion")
    if version != "1.0":
        problems.append(f"{where}: `specversion` is {version!r}; only CloudEvents 1.0 is understood")
    moment: datetime | None = None
    if raw.get("time") is not None:
        try:
            moment = parse_time(raw.get("time"))
        except ValueError as exc:
            problems.append(f"{where}: `time` {exc}")
    subject = _optional_string(raw, "subject", where, problems)
    data = raw.get("data")
    if data is None and raw.get("data_base64") is not None:
        data = _decode_base64(raw["data_base64"], _optional_string(raw, "datacontenttype", where, problems))
    if len(problems) > before:
        return None
    return Event(event_id, event_type, moment, source, subject, data, "CloudEvent", raw, None, position)


def _decode_base64(value: Any, content_type: str | None) -> Any:
    """`data_base64` holding JSON becomes that JSON; anything else stays as the base64 text."""
    if not isinstance(value, str):
        return value
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    if _media_type(content_type) in ("", "application/json", "text/json") or _media_type(
        content_type
    ).endswith("+json"):
        try:
            data = orjson.loads(decoded)
        except orjson.JSONDecodeError:
            return value
        # Nested too deeply to store (orjson reads 1,024 levels): kept as the base64 text.
        return data if _storable(data) else value
    return value


def _binary_cloud_event(body: bytes, content_type: str | None, headers: Mapping[str, str]) -> Event | None:
    """CloudEvents binary mode: attributes in `ce-*` headers, the data is the body."""
    raw: dict[str, Any] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower.startswith("ce-"):
            raw[lower[3:]] = value
    if content_type:
        raw["datacontenttype"] = content_type
    data: Any = None
    if body:
        media = _media_type(content_type)
        if media in ("application/json", "text/json") or media.endswith("+json"):
            try:
                data = _loads(body)
            except ValueError as exc:
                raise InvalidPayload(
                    [f"binary-mode CloudEvent: the body is declared JSON but is not ({exc})"]
                ) from None
        else:
            data = base64.b64encode(body).decode()
            raw["data_base64"] = data
    if data is not None and "data_base64" not in raw:
        raw["data"] = data
    problems: list[str] = []
    if not _storable(raw):
        why = unstorable(raw) or "cannot be stored as a document"
        raise InvalidPayload([f"binary-mode CloudEvent: {why}"])
    event = _cloud_event(raw, "binary-mode CloudEvent", problems)
    if problems:
        raise InvalidPayload(problems)
    return event


class NumberText(str):
    """A JSON number no double can hold (hundreds of digits, `1e400`), kept as its JSON text."""


def _int64(text: str) -> int | float | str:
    # Python refuses to read more than 4,300 digits; a double holds at most 309 before the point.
    if len(text) > 310:
        return NumberText(text)
    value = int(text)
    if -(2**63) <= value < 2**64:
        return value
    try:
        return float(value)  # as orjson reads integers beyond 64 bits
    except OverflowError:
        return NumberText(text)


def _finite_float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else NumberText(text)


def json_text(value: Any) -> str:
    """Any parsed JSON value back as JSON text, whatever it holds: lone surrogates are written as
    `\\uXXXX` escapes and nesting has no limit (no recursion), so a dead letter can always keep the
    original of what could not be stored."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token | NumberText):
            out.append(str(item))
        elif isinstance(item, dict):
            parts: list[Any] = [_Token("{")]
            for position, (key, inner) in enumerate(item.items()):
                prefix = "," if position else ""
                parts += [_Token(prefix + json.dumps(str(key), ensure_ascii=True) + ":"), inner]
            parts.append(_Token("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [_Token("[")]
            for position, inner in enumerate(item):
                if position:
                    parts.append(_Token(","))
                parts.append(inner)
            parts.append(_Token("]"))
            stack.extend(reversed(parts))
        elif isinstance(item, float) and not math.isfinite(item):
            out.append("null")
        elif isinstance(item, str | int | float | bool) or item is None:
            out.append(json.dumps(item, ensure_ascii=True))
        else:
            out.append(json.dumps(str(item), ensure_ascii=True))
    return "".join(out)


@dataclass(frozen=True)
class _Token:
    text: str

    def __str__(self) -> str:
        return self.text


def _surrogate(text: str) -> str | None:
    """The first lone surrogate of a string, as `U+D800`, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"
    return None


def _path(parts: list[Any]) -> str:
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{json_text(p)[1:-1]}" for p in parts)
    shown = shown.lstrip(".") or "the event"
    return shown if len(shown) <= 120 else shown[:117] + "..."


def unstorable(item: Any) -> str | None:
    """Why an event (as parsed) cannot be stored as a document, or None. Iterative: it may be
    nested as deeply as the parser allows."""
    stack: list[tuple[Any, list[Any]]] = [(item, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict | list) and len(path) >= MAX_DEPTH:
            return (
                f"`{_path(path[:8])}...` is nested more than {MAX_DEPTH} levels deep; at most "
                f"{MAX_DEPTH} are taken"
            )
        if isinstance(value, str):
            found = _surrogate(value)
            if found is not None:
                return (
                    f"`{_path(path)}` holds a lone UTF-16 surrogate ({found}), which is not Unicode "
                    "text; the sender must encode its strings as UTF-8"
                )
        elif isinstance(value, dict):
            for key, inner in value.items():
                found = _surrogate(key) if isinstance(key, str) else None
                if found is not None:
                    return (
                        f"a key in `{_path(path)}` holds a lone UTF-16 surrogate ({found}), which is not "
                        "Unicode text; the sender must encode its strings as UTF-8"
                    )
                stack.append((inner, [*path, key]))
        elif isinstance(value, list):
            stack.extend((inner, [*path, position]) for position, inner in enumerate(value))
    return None


def _storable(item: Any) -> bool:
    """The quick test (orjson, in C) that almost every event passes; `unstorable` says why not.
    A list of events passes when each of them would."""
    try:
        orjson.dumps({"mlops": item if isinstance(item, list) else {"raw": item}})
    except orjson.JSONEncodeError:
        return False
    return True


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def _loads(body: bytes) -> Any:
    """JSON text -> value; ValueError (orjson's message) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # valid JSON orjson declines (numbers beyond a double, lone surrogates, UTF-16)
            return json.loads(body, parse_int=_int64, parse_float=_finite_float, parse_constant=_no_constant)
        except (ValueError, RecursionError, OverflowError):
            raise ValueError(str(exc)) from None


def parse_delivery(
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str] | None = None,
    max_events: int = 5000,
) -> Delivery:
    """Parse one webhook delivery. Raise InvalidPayload when it can never be accepted."""
    media = _media_type(content_type)
    headers = headers or {}
    if any(k.lower() == "ce-specversion" for k in headers) and media not in (
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    ):
        event = _binary_cloud_event(body, content_type, headers)
        return Delivery("CloudEvent", [event] if event else [])
    if not body.strip():
        raise InvalidPayload(["the body is empty; expected a JSON array of events or a CloudEvent"])
    try:
        document = _loads(body)
    except ValueError as exc:
        raise InvalidPayload([f"the body is not JSON ({exc})"]) from None

    schema: Schema
    if media == "application/cloudevents+json":
        if not isinstance(document, dict):
            raise InvalidPayload(["`application/cloudevents+json` must carry one JSON object"])
        items: list[Any] = [document]
        schema = "CloudEvent"
    elif media == "application/cloudevents-batch+json":
        if not isinstance(document, list):
            raise InvalidPayload(["`application/cloudevents-batch+json` must carry a JSON array"])
        items, schema = document, "CloudEvent"
    else:
        items = document if isinstance(document, list) else [document]
        first = items[0] if items else None
        if isinstance(first, dict) and "specversion" in first:
            schema = "CloudEvent"
        elif (isinstance(first, dict) and "eventType" in first) or not items:
            schema = "EventGridEvent"
        else:
            raise InvalidPayload(
                [
                    "the body is neither Event Grid events (with `eventType`) nor CloudEvents (with "
                    "`specversion`)"
                ]
            )
    if len(items) > max_events:
        raise InvalidPayload([f"{len(items)} events in one delivery; at most {max_events} are taken"])

    problems: list[str] = []
    events: list[Event] = []
    invalid: list[InvalidEvent] = []
    parse = _cloud_event if schema == "CloudEvent" else _eventgrid_event
    # One serialisation of the whole delivery, each event as deep as its document will hold it: when
    # it passes (nearly always), no event needs the test of its own.
    every_one_storable = _storable(items)
    for position, item in enumerate(items):
        before = len(problems)
        if not every_one_storable and not _storable(item):
            why = unstorable(item) or "cannot be stored as a document"
            problems.append(f"event {position}: {why}")
            invalid.append(InvalidEvent(position, problems[before:], item))
            continue
        event = parse(item, f"event {position}", problems, position)
        if event is not None:
            events.append(event)
        elif len(problems) > before:
            invalid.append(InvalidEvent(position, problems[before:], item))
    validating = any(e.type == SUBSCRIPTION_VALIDATION for e in events)
    if problems and (not events or validating):
        raise InvalidPayload(problems)

    validation = [e for e in events if e.type == SUBSCRIPTION_VALIDATION]
    if validation:
        data = validation[0].data if isinstance(validation[0].data, dict) else {}
        code = data.get("validationCode")
        if not isinstance(code, str) or not code:
            raise InvalidPayload(["subscription validation event without a `data.validationCode`"])
        url = data.get("validationUrl")
        return Delivery(schema, events, code, url if isinstance(url, str) else None)
    # Some events are bad, others good: the good ones are written, the bad ones dead-lettered.
    return Delivery(schema, events, invalid=invalid)
