"""Delivery health over time on the admin UI's pages: the roll-up's buckets
(`delivery.stats`) as charts (`ui.charts`), for the templates (registered as globals by
`ui.rendering`)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from docuhooks.delivery.stats import Bucket
from docuhooks.ui import charts

__all__ = ["GLOBALS", "bucket_label", "latency_chart", "outcome_chart", "sparkline"]

_GRAIN_WORDS = {"hour": ("hour", "48 hours"), "day": ("day", "30 days")}


def bucket_label(bucket: Bucket, grain: str) -> str:
    """A bucket's start as the tables show it (UTC)."""
    return bucket.start.strftime("%Y-%m-%d %H:00" if grain == "hour" else "%Y-%m-%d")


def _axis_labels(buckets: Sequence[Bucket], grain: str) -> list[str]:
    # An hour's label names its day too: 48 hours show the same hour twice.
    return [b.start.strftime("%m-%d %H:00" if grain == "hour" else "%m-%d") for b in buckets]


def outcome_chart(chart_id: str, buckets: Sequence[Bucket], grain: str) -> Markup:
    per, span = _GRAIN_WORDS[grain]
    return charts.bar_chart(
        chart_id,
        f"Attempts per {per}, last {span} (UTC): succeeded (solid) and failed (striped)",
        _axis_labels(buckets, grain),
        [
            charts.Bars("succeeded", [b.succeeded for b in buckets]),
            charts.Bars("failed", [b.failed for b in buckets], striped=True),
        ],
        unit="attempts",
    )


def latency_chart(chart_id: str, buckets: Sequence[Bucket], grain: str) -> Markup:
    per, span = _GRAIN_WORDS[grain]
    return charts.line_chart(
        chart_id,
        f"Duration per {per}, last {span} (UTC): p50 (solid, circles) and p99 (dashed, squares)",
        _axis_labels(buckets, grain),
        [
            charts.Line("p50", [b.p50_ms for b in buckets]),
            charts.Line("p99", [b.p99_ms for b in buckets], dashed=True),
        ],
        unit="ms",
    )


def sparkline(chart_id: str, buckets: Sequence[Bucket]) -> Markup:
    succeeded = sum(b.succeeded for b in buckets)
    failed = sum(b.failed for b in buckets)
    return charts.sparkline(
        chart_id,
        f"Last {len(buckets)} hours: {succeeded:,} attempts succeeded, {failed:,} failed",
        [b.succeeded for b in buckets],
        [b.failed for b in buckets],
    )


GLOBALS = {
    "bucket_label": bucket_label,
    "latency_chart": latency_chart,
    "outcome_chart": outcome_chart,
    "sparkline": sparkline,
}
