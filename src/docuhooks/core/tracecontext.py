"""W3C Trace Context: the `traceparent` and `tracestate` headers, read strictly and written.

Every request docuhooks sends carries a `traceparent`. It continues the trace of whatever
caused it: the API request that finished an interview, opened it or pressed one of its
buttons; so a receiver that traces sees its work inside the same trace as the platform's.
An incoming header that is not exactly what the recommendation allows (a wrong length,
upper-case hex, an all-zero id, version `ff`, two `traceparent` headers) is ignored, and a
new trace starts: a hostile or broken caller can never inject anything into the headers we
send, which are rebuilt from the parsed ids, never copied.

Pure: no I/O. Random ids come from `core.ids.random_bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from docuhooks.core.ids import random_bytes

__all__ = [
    "SAMPLED",
    "TraceContext",
    "checked",
    "child_traceparent",
    "from_headers",
    "from_stored",
    "new_span_id",
    "new_trace",
    "parse_traceparent",
    "parse_tracestate",
]

#: The `sampled` bit of trace-flags: the caller may have recorded its span.
SAMPLED = 0x01
#: A `tracestate` longer than this is cut (members over 128 characters first, then from the
#: end), as the recommendation allows; a vendor need propagate no more.
MAX_TRACESTATE = 512
_MAX_MEMBERS = 32
_LONG_MEMBER = 128

# version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex only. A later version
# may add fields after the fourth, each behind a "-": they are ignored (and not sent on).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_KEY = re.compile(
    r"[a-z][a-z0-9_\-*/]{0,255}"  # a simple key
    r"|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"  # tenant@system
)
# Printable ASCII but ",", "=", and a trailing space.
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A position in a trace: the trace's id, the id of the span that is the parent of
    whatever comes next, the trace flags, and the vendors' `tracestate` (or "")."""

    trace_id: str
    span_id: str
    flags: int = SAMPLED
    state: str = ""

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    @property
    def traceparent(self) -> str:
        """The `traceparent` header that makes a callee's span a child of this one."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self, span_id: str | None = None) -> TraceContext:
        """The same trace, with a new span (`span_id`, or a random one) as the parent."""
        return TraceContext(self.trace_id, span_id or new_span_id(), self.flags, self.state)

    def headers(self) -> dict[str, str]:
        """`traceparent`, and `tracestate` when there is one."""
        if self.state:
            return {"traceparent": self.traceparent, "tracestate": self.state}
        return {"traceparent": self.traceparent}


def new_span_id() -> str:
    """A random, non-zero span id."""
    while (span_id := random_bytes(8).hex()) == _ZERO_SPAN:  # pragma: no cover (2**-64)
        pass
    return span_id


def new_trace(*, sampled: bool = True) -> TraceContext:
    """The start of a new trace: a random trace id and a random span id."""
    while (ids := random_bytes(24).hex())[:32] == _ZERO_TRACE:  # pragma: no cover
        pass
    span_id = ids[32:] if ids[32:] != _ZERO_SPAN else new_span_id()
    return TraceContext(ids[:32], span_id, SAMPLED if sampled else 0)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace context a `traceparent` header names, or None when it is absent or not
    valid (then the caller starts a new trace). Only the sampled flag is kept: the others
    are not defined for version 00, which is what we send on."""
    if value is None or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest is not None:
        return None  # version 00 has exactly four fields
    return TraceContext(trace_id, span_id, int(flags, 16) & SAMPLED)


def parse_tracestate(values: str | Iterable[str] | None) -> str:
    """A `tracestate` header (or the values of several, which join with commas) checked
    member by member, as it will be sent on; "" when it is absent or not valid (a bad member,
    a duplicate key, more than 32 members): then none of it is kept."""
    if values is None:
        return ""
    text = values if isinstance(values, str) else ",".join(values)
    if len(text) > 8192:
        return ""
    members: list[str] = []
    keys: set[str] = set()
    for raw in text.split(","):
        member = raw.strip(" \t")
        if not member:
            continue  # empty members are allowed, and dropped
        key, equals, value = member.partition("=")
        if not equals or _KEY.fullmatch(key) is None or _VALUE.fullmatch(value) is None:
            return ""
        if key in keys:
            return ""
        keys.add(key)
        members.append(member)
    if len(members) > _MAX_MEMBERS:
        return ""
    return _within_limit(members)


def _within_limit(members: list[str]) -> str:
    joined = ",".join(members)
    if len(joined) <= MAX_TRACESTATE:
        return joined
    members = [member for member in members if len(member) <= _LONG_MEMBER]
    while members and len(",".join(members)) > MAX_TRACESTATE:
        members.pop()
    return ",".join(members)


def from_headers(
    traceparent: str | Iterable[str] | None, tracestate: str | Iterable[str] | None = None
) -> TraceContext | None:
    """The caller's trace context from its headers, or None (a new trace starts). Several
    `traceparent` headers are not valid; a `tracestate` counts only beside a valid one."""
    if traceparent is not None and not isinstance(traceparent, str):
        values = list(traceparent)
        if len(values) != 1:
            return None
        traceparent = values[0]
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    state = parse_tracestate(tracestate)
    return TraceContext(parent.trace_id, parent.span_id, parent.flags, state) if state else parent


#: A `traceparent` as we write it (version 00, only the sampled flag), for `checked`.
_AS_WRITTEN = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-0[01]")


def checked(traceparent: str | None) -> str | None:
    """A stored `traceparent` if it is exactly one we write, else None: the cheap check the
    delivery worker makes of each job it loads (the full reading is `from_stored`)."""
    if traceparent is None or _AS_WRITTEN.fullmatch(traceparent) is None:
        return None
    return traceparent


def child_traceparent(traceparent: str | None) -> str:
    """The `traceparent` of a call in the trace `traceparent` names (one `checked` let
    through): its trace id and flags with a new span id; a new trace's for None. What a
    delivery attempt sends when spans are off: string work only, as cheap as a fresh one."""
    if traceparent is None:
        return new_trace().traceparent
    return f"{traceparent[:36]}{new_span_id()}{traceparent[52:]}"


def from_stored(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The trace context kept with an event or a version (None for rows from before it
    was kept): checked again on the way out, as anything read back is."""
    return from_headers(traceparent, tracestate)
