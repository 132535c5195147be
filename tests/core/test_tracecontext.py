"""The W3C trace context headers: what is valid is read exactly, anything else is refused
(a new trace starts), and what we send on is always well-formed, whatever came in."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core.tracecontext import (
    MAX_TRACESTATE,
    SAMPLED,
    TraceContext,
    checked,
    child_traceparent,
    from_headers,
    from_stored,
    new_span_id,
    new_trace,
    parse_traceparent,
    parse_tracestate,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
WELL_FORMED = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")

hex_lower = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)


def hex_of(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=n, max_size=n)


class TestTraceparent:
    def test_the_recommendations_example(self) -> None:
        assert parse_traceparent(VALID) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)
        assert parse_traceparent(VALID).traceparent == VALID  # type: ignore[union-attr]

    def test_an_unsampled_caller(self) -> None:
        parsed = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-00")
        assert parsed is not None and not parsed.sampled
        assert parsed.traceparent.endswith("-00")

    def test_flags_other_than_sampled_are_not_passed_on(self) -> None:
        parsed = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-ff")
        assert parsed is not None and parsed.flags == SAMPLED

    def test_surrounding_whitespace_is_allowed(self) -> None:
        assert parse_traceparent(f" \t{VALID} ") is not None

    def test_a_later_version_is_read_by_its_first_four_fields(self) -> None:
        parsed = parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-holds")
        assert parsed == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)
        assert parsed.traceparent == VALID  # sent on as version 00

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            VALID.upper(),
            f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
            f"00-{'0' * 32}-{SPAN_ID}-01",
            f"00-{TRACE_ID}-{'0' * 16}-01",
            f"ff-{TRACE_ID}-{SPAN_ID}-01",
            f"00-{TRACE_ID}-{SPAN_ID}-01-",
            f"00-{TRACE_ID}-{SPAN_ID}-01-00",
            f"00-{TRACE_ID}-{SPAN_ID}",
            f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
            f"00-{TRACE_ID}-{SPAN_ID}0-01",
            f"0-{TRACE_ID}-{SPAN_ID}-01",
            f"00_{TRACE_ID}_{SPAN_ID}_01",
            f"cc-{TRACE_ID}-{SPAN_ID}-01x",
            f"00-{TRACE_ID}-{SPAN_ID}-0g",
            VALID + "\r\nX-Injected: 1",
            VALID + "\n",
            "00-" + "g" * 32 + f"-{SPAN_ID}-01",
            VALID + "-" + "a" * 600,
        ],
    )
    def test_what_is_not_exactly_valid_is_refused(self, value: str | None) -> None:
        assert parse_traceparent(value) is None

    @given(hex_of(32), hex_of(16), hex_of(2))
    def test_every_valid_header_reads_back_its_ids(
        self, trace_id: str, span_id: str, flags: str
    ) -> None:
        parsed = parse_traceparent(f"00-{trace_id}-{span_id}-{flags}")
        if trace_id == "0" * 32 or span_id == "0" * 16:
            assert parsed is None
            return
        assert parsed is not None
        assert (parsed.trace_id, parsed.span_id) == (trace_id, span_id)
        assert parsed.flags == int(flags, 16) & SAMPLED

    @given(st.text(max_size=200))
    def test_any_text_is_refused_or_read_into_a_well_formed_context(self, value: str) -> None:
        parsed = parse_traceparent(value)
        if parsed is not None:
            assert WELL_FORMED.fullmatch(parsed.traceparent)
            assert parsed.trace_id in value and parsed.span_id in value

    @given(st.binary(max_size=120).map(lambda raw: raw.decode("latin-1")))
    def test_any_header_bytes_never_reach_what_is_sent(self, value: str) -> None:
        parsed = from_headers([value], [value])
        if parsed is not None:
            for header, sent in parsed.child().headers().items():
                assert "\r" not in sent and "\n" not in sent, header
                assert sent.isascii()


class TestTracestate:
    def test_members_are_kept_in_order_without_optional_whitespace(self) -> None:
        assert parse_tracestate("rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE") == (
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        )

    def test_several_headers_join(self) -> None:
        assert parse_tracestate(["a=1", "b=2,c=3"]) == "a=1,b=2,c=3"

    def test_empty_members_are_dropped(self) -> None:
        assert parse_tracestate(",a=1,, ,b=2,") == "a=1,b=2"

    def test_a_multi_tenant_key(self) -> None:
        assert parse_tracestate("fw529a3039@dt=FFFF") == "fw529a3039@dt=FFFF"

    @pytest.mark.parametrize(
        "value",
        [
            "A=1",  # upper-case key
            "a=1,a=2",  # duplicate key
            "a",  # no value
            "a=",  # empty value
            "a=b=c",
            "a=b,c",
            "1a=b",  # a simple key starts with a letter
            "a@=b",
            "a=b\x00",
            "a=b\r\nX: y",
            ",".join(f"k{i}=v" for i in range(33)),  # too many members
        ],
    )
    def test_one_bad_member_drops_the_whole_state(self, value: str) -> None:
        assert parse_tracestate(value) == ""

    def test_a_long_state_loses_its_long_members_first_then_its_last(self) -> None:
        long_member = "big=" + "x" * 200
        members = [f"k{i}=" + "v" * 40 for i in range(20)]
        cut = parse_tracestate(",".join([long_member, *members]))
        assert len(cut) <= MAX_TRACESTATE
        assert "big=" not in cut
        assert cut.split(",") == members[: len(cut.split(","))]

    @given(st.text(max_size=300))
    def test_any_text_gives_a_state_fit_to_send(self, value: str) -> None:
        state = parse_tracestate(value)
        assert len(state) <= MAX_TRACESTATE
        assert state == "" or all(
            re.fullmatch(r"[a-z0-9][a-z0-9_\-*/@]*=[\x20-\x7e]*[\x21-\x7e]", member)
            for member in state.split(",")
        )


class TestContexts:
    def test_tracestate_counts_only_beside_a_valid_traceparent(self) -> None:
        assert from_headers(None, "a=b") is None
        assert from_headers("junk", "a=b") is None
        assert from_headers(VALID, "a=b") == TraceContext(TRACE_ID, SPAN_ID, SAMPLED, "a=b")

    def test_two_traceparent_headers_are_not_valid(self) -> None:
        assert from_headers([VALID, VALID]) is None
        assert from_headers([VALID]) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)

    def test_a_child_keeps_the_trace_flags_and_state_with_a_new_span(self) -> None:
        parent = TraceContext(TRACE_ID, SPAN_ID, 0, "a=b")
        child = parent.child()
        assert (child.trace_id, child.flags, child.state) == (TRACE_ID, 0, "a=b")
        assert child.span_id != SPAN_ID and re.fullmatch(r"[0-9a-f]{16}", child.span_id)
        assert child.headers() == {"traceparent": child.traceparent, "tracestate": "a=b"}

    def test_new_traces_and_spans_are_random_and_well_formed(self) -> None:
        traces = {new_trace().trace_id for _ in range(50)}
        assert len(traces) == 50
        assert all(WELL_FORMED.fullmatch(new_trace().traceparent) for _ in range(50))
        assert not new_trace(sampled=False).sampled
        assert len({new_span_id() for _ in range(50)}) == 50

    def test_a_stored_context_reads_back(self) -> None:
        context = TraceContext(TRACE_ID, SPAN_ID, SAMPLED, "a=b")
        assert from_stored(context.traceparent, context.state) == context
        assert from_stored(None) is None
        assert from_stored(context.traceparent, None) == TraceContext(TRACE_ID, SPAN_ID)


class TestTheWorkersFastPath:
    """What a delivery attempt does with its event's stored context when spans are off."""

    def test_only_a_traceparent_as_we_write_it_passes(self) -> None:
        assert checked(VALID) == VALID
        assert checked(f"00-{TRACE_ID}-{SPAN_ID}-00") is not None
        for bad in (None, "", VALID.upper(), f"00-{'0' * 32}-{SPAN_ID}-01", VALID + " "):
            assert checked(bad) is None
        assert checked(f"00-{TRACE_ID}-{'0' * 16}-01") is None

    def test_a_child_keeps_the_trace_and_flags_with_a_new_span(self) -> None:
        for flags in ("00", "01"):
            child = parse_traceparent(child_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}"))
            assert child is not None
            assert (child.trace_id, child.flags) == (TRACE_ID, int(flags))
            assert child.span_id != SPAN_ID

    def test_without_a_stored_context_a_new_trace_starts(self) -> None:
        first, second = child_traceparent(None), child_traceparent(None)
        assert WELL_FORMED.fullmatch(first) and first[3:35] != second[3:35]
