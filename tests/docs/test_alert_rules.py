"""The sample Prometheus alert rules (`docs/prometheus/alerts.yml`) watch what docuhooks
really exposes: every metric a rule's expression names, and every label value it matches on,
is in a scrape of a live app's `/metrics`; and the operations guide explains every rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "alerts.yml"
GUIDE = ROOT / "docs" / "operations.md"

_METRIC = re.compile(r"\b(docuhooks_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_DURATION = re.compile(r"\d+[smhd]")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


async def exposed(client: httpx.AsyncClient) -> dict[str, list[dict[str, str]]]:
    """Each sample name a scrape shows, with the label sets it has."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def test_every_rule_is_complete() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert _DURATION.fullmatch(rule["for"]), rule["alert"]


def test_the_rules_cover_what_an_operator_must_hear_about() -> None:
    watched = " ".join(rule["expr"] for rule in rules())
    for metric in (
        "docuhooks_oldest_due_delivery_age_seconds",  # backlog age
        "docuhooks_deliveries_total",  # failure rate
        "docuhooks_workers_alive",  # workers alive
        "docuhooks_destinations",  # breakers open
        "docuhooks_webhooks_suspended",  # suspended webhooks
    ):
        assert metric in watched


async def test_every_metric_and_label_value_a_rule_uses_is_exposed(
    client: httpx.AsyncClient,
) -> None:
    samples = await exposed(client)
    for rule in rules():
        used = _METRIC.findall(rule["expr"])
        assert used, f"{rule['alert']} watches no docuhooks metric"
        for metric, selector in used:
            assert metric in samples, f"{rule['alert']}: /metrics has no {metric}"
            for label, operator, value in _MATCHER.findall(selector):
                present = {labels.get(label) for labels in samples[metric]}
                wanted = value.split("|") if operator in ("=~", "!~") else [value]
                missing = [v for v in wanted if v not in present]
                assert not missing, f"{rule['alert']}: {metric} has no {label}={missing}"


def test_the_operations_guide_explains_every_rule() -> None:
    guide = GUIDE.read_text()
    for rule in rules():
        assert f"`{rule['alert']}`" in guide, f"docs/operations.md does not explain {rule['alert']}"


def test_the_breaker_rule_counts_a_breaker_being_probed_as_open() -> None:
    # A probe turns an open breaker `half_open` until its outcome is recorded (a timeout's
    # worth of seconds, every probe interval): a scrape then sees no `open` destination. A
    # rule on `state="open"` alone resets its `for` timer at such a scrape, and for a dead
    # host probed every 30 s it might never fire.
    (rule,) = [rule for rule in rules() if rule["alert"] == "DocuhooksBreakerOpen"]
    selectors = [selector for metric, selector in _METRIC.findall(rule["expr"])]
    (selector,) = selectors
    ((label, operator, value),) = _MATCHER.findall(selector)
    assert (label, operator) == ("state", "=~")
    assert set(value.split("|")) == {"open", "half_open"}
    # Per process, summed over the two states; then the largest of the processes' values.
    assert "sum without (state)" in rule["expr"]
