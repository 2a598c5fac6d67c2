"""Alert rules: what a rule means, and the in-memory set a worker evaluates against.

A rule compares one metric of the events of a device, a site or all devices with a
threshold. Each value falls in one of three classes: it breaches the rule, it clearly does
not (below the clear threshold, when the rule has one), or it sits in the hysteresis band
between the two, where a firing alert keeps firing.
"""

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from app.core.errors import InvalidInput

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
BREACH, HOLD, CLEAR = "b", "h", "c"
# Which series of a forecast a predicted-breach rule compares with its threshold.
Bound = Literal["forecast", "lo80", "hi80", "lo95", "hi95"]
BOUNDS: tuple[Bound, ...] = get_args(Bound)
# A forecast is a band over time: ordering comparisons only (== on a float forecast is noise).
FORECAST_OPS = (">", ">=", "<", "<=")


def check_clear_threshold(op: str, threshold: float, clear: float | None) -> None:
    """The clear threshold must sit on the safe side of the threshold."""
    if clear is None:
        return
    if op in ("==", "!="):
        raise InvalidInput(f"is not supported with {op!r}", field="clear_threshold")
    if op in (">", ">=") and clear > threshold:
        raise InvalidInput(f"must be at most the threshold with {op!r}", field="clear_threshold")
    if op in ("<", "<=") and clear < threshold:
        raise InvalidInput(f"must be at least the threshold with {op!r}", field="clear_threshold")


def check_forecast(
    op: str, device_id: str | None, site_id: str | None, for_s: float, cooldown_s: float
) -> None:
    """A predicted breach needs one model (a device's or a site's) and an ordering."""
    if device_id is None and site_id is None:
        raise InvalidInput(
            "a forecast condition needs device_id or site_id (one model to forecast with)",
            field="forecast",
        )
    if op not in FORECAST_OPS:
        raise InvalidInput(f"must be one of {', '.join(FORECAST_OPS)} with a forecast", field="op")
    # The forecaster re-evaluates whole forecasts, not a stream of events: there is no event
    # time for `for` or `cooldown` to count.
    if for_s:
        raise InvalidInput("is not supported with a forecast condition", field="for")
    if cooldown_s:
        raise InvalidInput("is not supported with a forecast condition", field="cooldown")


@dataclass(frozen=True, slots=True)
class ForecastCondition:
    """A predicted breach: the rule's bound of the forecast crosses within horizon_s."""

    horizon_s: float
    bound: str = "forecast"

    def public(self) -> dict[str, Any]:
        return {"horizon": self.horizon_s, "bound": self.bound}

    def stored(self) -> dict[str, Any]:
        return {"horizon_s": self.horizon_s, "bound": self.bound}

    @classmethod
    def from_stored(cls, body: Mapping[str, Any] | None) -> "ForecastCondition | None":
        if body is None:
            return None
        return cls(float(body["horizon_s"]), str(body.get("bound") or "forecast"))


@dataclass(frozen=True, slots=True)
class Rule:
    tenant_id: str
    rule_id: int
    metric: str
    op: str
    threshold: float
    device_id: str | None = None
    site_id: str | None = None
    clear_threshold: float | None = None
    for_s: float = 0.0
    cooldown_s: float = 0.0
    version: int = 0
    created_at: str | None = None
    deleted: bool = False
    # Set: the forecaster evaluates the rule against forecasts; the workers skip it.
    forecast: ForecastCondition | None = None

    def classify(self, value: float) -> str:
        compare = OPS[self.op]
        if compare(value, self.threshold):
            return BREACH
        if self.clear_threshold is not None and compare(value, self.clear_threshold):
            return HOLD
        return CLEAR

    def public(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return {
            "id": self.rule_id,
            "device_id": self.device_id,
            "site_id": self.site_id,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "clear_threshold": self.clear_threshold,
            "for": self.for_s,
            "cooldown": self.cooldown_s,
            "version": self.version,
            "created_at": self.created_at,
            "forecast": self.forecast.public() if self.forecast is not None else None,
        }

    def message(self) -> dict[str, Any]:
        """The rule change as published to the workers."""
        body = {**self.public(), "tenant_id": self.tenant_id, "deleted": self.deleted}
        body["forecast"] = self.forecast.stored() if self.forecast is not None else None
        return body

    @classmethod
    def from_message(cls, body: Mapping[str, Any]) -> "Rule":
        return cls(
            tenant_id=str(body["tenant_id"]),
            rule_id=int(body["id"]),
            metric=str(body["metric"]),
            op=str(body["op"]),
            threshold=float(body["threshold"]),
            device_id=body.get("device_id"),
            site_id=body.get("site_id"),
            clear_threshold=body.get("clear_threshold"),
            for_s=float(body.get("for") or 0.0),
            cooldown_s=float(body.get("cooldown") or 0.0),
            version=int(body["version"]),
            created_at=body.get("created_at"),
            deleted=bool(body.get("deleted")),
            forecast=ForecastCondition.from_stored(body.get("forecast")),
        )


@dataclass(slots=True)
class TenantRules:
    """One tenant's live rules by scope, so an event meets only the rules that can apply."""

    everyone: list[Rule] = field(default_factory=list)
    by_device: dict[str, list[Rule]] = field(default_factory=dict)
    by_site: dict[str, list[Rule]] = field(default_factory=dict)

    def __len__(self) -> int:
        return (
            len(self.everyone)
            + sum(len(rules) for rules in self.by_device.values())
            + sum(len(rules) for rules in self.by_site.values())
        )

    def add(self, rule: Rule) -> None:
        if rule.device_id is not None:
            self.by_device.setdefault(rule.device_id, []).append(rule)
        elif rule.site_id is not None:
            self.by_site.setdefault(rule.site_id, []).append(rule)
        else:
            self.everyone.append(rule)


class RuleSet:
    """The live rules of every tenant, indexed by tenant and scope for the evaluator.

    Changes arrive twice (Pub/Sub at once, the periodic sync later), possibly out of order;
    each rule keeps the highest version seen, tombstones included, so a late or repeated
    change never undoes a newer one.
    """

    def __init__(self) -> None:
        self._seen: dict[str, dict[int, Rule]] = {}
        self._index: dict[str, TenantRules] = {}
        # Per tenant: every change up to this version has been applied (from the sync).
        self.versions: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(rules) for rules in self._index.values())

    def apply(self, changes: Iterable[Rule]) -> int:
        """Apply rule changes; the number of tenants whose rules changed."""
        touched: set[str] = set()
        for rule in changes:
            rules = self._seen.setdefault(rule.tenant_id, {})
            known = rules.get(rule.rule_id)
            if known is not None and known.version >= rule.version:
                continue
            rules[rule.rule_id] = rule
            touched.add(rule.tenant_id)
        for tenant in touched:
            self._reindex(tenant)
        return len(touched)

    def synced(self, versions: Mapping[str, int]) -> None:
        for tenant, version in versions.items():
            self.versions[tenant] = max(version, self.versions.get(tenant, 0))

    def _reindex(self, tenant: str) -> None:
        index = TenantRules()
        for _, rule in sorted(self._seen.get(tenant, {}).items()):
            # Predicted-breach rules are the forecaster's: no event is compared with them.
            if not rule.deleted and rule.forecast is None:
                index.add(rule)
        if len(index):
            self._index[tenant] = index
        else:
            self._index.pop(tenant, None)

    def for_tenant(self, tenant: str) -> TenantRules | None:
        return self._index.get(tenant)

    def get(self, tenant: str, rule_id: int) -> Rule | None:
        rule = self._seen.get(tenant, {}).get(rule_id)
        return None if rule is None or rule.deleted else rule
