"""Matching committed events against the rules in memory, and the arguments of the state
script (app/alerts/state.py) for what matched. Pure functions: the workers call them after
each commit."""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from app.alerts.rules import Rule, RuleSet
from app.alerts.state import state_key


@lru_cache(maxsize=8192)
def _second(seconds: int) -> str:
    # A batch's events share few distinct seconds; strftime is the dearest step per event.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_time(ts_us: int) -> str:
    """Event time as the alert payload shows it: UTC, seconds, micros only when present."""
    seconds, micros = divmod(ts_us, 1_000_000)
    text = _second(seconds)
    return f"{text}.{micros:06d}" if micros else text


def _rule_tail(rule: Rule) -> bytes:
    """The end of the payload: which rule; the script closes the object with it."""
    body = orjson.dumps(
        {
            "rule_id": rule.rule_id,
            "tenant_id": rule.tenant_id,
            "metric": rule.metric,
            "op": rule.op,
            "threshold": rule.threshold,
        }
    )
    return b"," + body[1:]


Pair = tuple[int, str, str]
Observation = tuple[int, str, dict[str, Any]]
_NONE: list[Rule] = []


def observations(
    rules: RuleSet, events: Sequence[dict[str, Any]]
) -> dict[Pair, tuple[Rule, list[Observation]]]:
    """What the rules in memory match: per (rule, tenant, device), (ts, class, event) in
    event time order, since the state machine of each pair runs in event time."""
    out: dict[Pair, tuple[Rule, list[Observation]]] = {}
    for event in events:
        tenant = event["tenant_id"]
        scoped = rules.for_tenant(tenant)
        if scoped is None:
            continue
        metrics = event["metrics"]
        device, site = event["device_id"], event.get("site_id")
        for group in (
            scoped.everyone,
            scoped.by_device.get(device, _NONE),
            scoped.by_site.get(site, _NONE) if site is not None else _NONE,
        ):
            for rule in group:
                value = metrics.get(rule.metric)
                if value is None:
                    continue
                pair = (rule.rule_id, tenant, device)
                seen = out.get(pair)
                if seen is None:
                    seen = out[pair] = (rule, [])
                seen[1].append((event["ts"], rule.classify(value), event))
    for _, observed in out.values():
        if len(observed) > 1:
            observed.sort(key=itemgetter(0))
    return out


def chunks(
    observed: dict[Pair, tuple[Rule, list[Observation]]], chunk: int
) -> Iterator[dict[Pair, tuple[Rule, list[Observation]]]]:
    """The pairs in groups of about `chunk` observations, a pair's observations together."""
    part: dict[Pair, tuple[Rule, list[Observation]]] = {}
    size = 0
    for pair, value in observed.items():
        if part and size + len(value[1]) > chunk:
            yield part
            part, size = {}, 0
        part[pair] = value
        size += len(value[1])
    if part:
        yield part


def script_calls(
    observed: dict[Pair, tuple[Rule, list[Observation]]], state_prefix: str, chunk: int
) -> Iterator[tuple[list[str], list[Any]]]:
    """The state keys and arguments of the transition script, about `chunk` observations a
    call; bounded calls keep Redis responsive. A pair's observations stay in one call."""
    pairs = iter(observed.items())
    pending = next(pairs, None)
    while pending is not None:
        rule_index: dict[tuple[str, int], int] = {}
        rule_args: list[Any] = []
        key_names: list[str] = []
        key_rules: list[str] = []
        devices: list[bytes] = []
        parts: dict[int, int] = {}
        event_parts: list[bytes] = []
        groups: list[str] = []
        while pending is not None and (not groups or len(groups) < chunk):
            (rule_id, tenant, device), (rule, rows) = pending
            r = rule_index.get((tenant, rule_id))
            if r is None:
                r = rule_index[(tenant, rule_id)] = len(rule_index) + 1
                rule_args += [
                    round(rule.for_s * 1_000_000),
                    round(rule.cooldown_s * 1_000_000),
                    _rule_tail(rule),
                ]
            key_names.append(state_key(state_prefix, tenant, rule_id, device))
            key_rules.append(str(r))
            devices.append(orjson.dumps(device))
            k = len(key_names)
            for ts, kind, event in rows:
                e = parts.get(id(event))
                if e is None:
                    event_parts.append(
                        b',"metrics":'
                        + orjson.dumps(event["metrics"])
                        + b',"time":"'
                        + format_time(ts).encode()
                        + b'","site_id":'
                        + orjson.dumps(event.get("site_id"))
                    )
                    e = parts[id(event)] = len(event_parts)
                groups.append(f"{k} {ts} {kind} {e}")
            pending = next(pairs, None)
        yield (
            key_names,
            [
                len(rule_index),
                *rule_args,
                len(key_names),
                " ".join(key_rules),
                *devices,
                len(event_parts),
                *event_parts,
                " ".join(groups),
            ],
        )
