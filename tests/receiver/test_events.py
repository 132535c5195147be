from datetime import UTC, datetime

import pytest
from tests.receiver.receiver_samples import PDF, sample_event

from docuhooks.core.events import EventType
from docuhooks_receiver import (
    CustomInterviewEvent,
    InterviewLoadEvent,
    MalformedRequest,
    NewWorkItemVersionComplete,
    PostProcessingEvent,
    User,
    parse_event,
)


def test_new_work_item_version_complete() -> None:
    event = parse_event(sample_event(EventType.NEW_WORK_ITEM_VERSION_COMPLETE))
    assert isinstance(event, NewWorkItemVersionComplete)
    assert event.created_date == datetime(2026, 11, 29, 10, 15, tzinfo=UTC)
    assert event.user == User(
        id="0f9d7c1e-5f6a-4d7b-8e1c-2a3b4c5d6e7f",
        login_name="ann@example.com",
        name="Ann Lee",
        email="ann@example.com",
    )
    assert event.work_item.name == "Lease for Jane"
    assert event.work_item.version_number == 2
    assert event.work_item.work_group_id == "f5f5f5f5-0000-4000-8000-000000000005"
    (document,) = event.documents
    assert document.file_name == "lease.pdf"
    assert document.size == len(PDF)
    assert document.content is None
    assert event.test is False


def test_interview_load() -> None:
    event = parse_event(sample_event(EventType.INTERVIEW_LOAD_EVENT, test=True))
    assert isinstance(event, InterviewLoadEvent)
    assert event.interview_id == "e4e4e4e4-0000-4000-8000-000000000004"
    assert event.work_item.version_number is None
    assert event.test is True


def test_custom_interview_event_carries_its_name_and_answers() -> None:
    event = parse_event(sample_event(EventType.CUSTOM_INTERVIEW_EVENT))
    assert isinstance(event, CustomInterviewEvent)
    assert event.interview_event_name == "Look up client"
    assert event.answers["answers"][0]["value"] == "Jane"


def test_post_processing_decodes_document_content() -> None:
    event = parse_event(sample_event(EventType.POST_PROCESSING_EVENT))
    assert isinstance(event, PostProcessingEvent)
    assert event.documents[0].content == PDF
    assert event.callback_deadline == datetime(2026, 11, 29, 10, 25, tzinfo=UTC)
    assert event.complete_url.endswith("/complete")
    assert event.work_item.name is None


def test_unknown_fields_are_kept_in_raw_and_ignored() -> None:
    raw = sample_event(EventType.INTERVIEW_LOAD_EVENT)
    raw["data"]["somethingNew"] = {"x": 1}
    event = parse_event(raw)
    assert event.raw["data"]["somethingNew"] == {"x": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("eventId"), "eventId is missing"),
        (lambda e: e.update(eventType="Nope"), "eventType 'Nope' is not one of"),
        (lambda e: e["createdBy"].pop("loginName"), "createdBy.loginName is missing"),
        (lambda e: e.update(createdDate="yesterday"), "createdDate: expected an ISO 8601"),
        (lambda e: e.update(createdDate="2026-01-01T00:00:00"), "with a time zone"),
        (lambda e: e["data"].update(versionNumber="two"), "data.versionNumber: expected an int"),
        (lambda e: e["data"].update(versionNumber=True), "data.versionNumber: expected an int"),
        (lambda e: e["data"].update(documents={}), "data.documents: expected a list"),
        (lambda e: e["data"]["documents"][0].pop("url"), r"data.documents\[0\].url is missing"),
        (
            lambda e: e["data"]["documents"][0].update(size="big"),
            r"data.documents\[0\].size: expected an integer",
        ),
        (lambda e: e.update(test="yes"), "test: expected true or false"),
        (lambda e: e.update(data=[]), "data: expected an object"),
    ],
)
def test_bad_events_name_the_field(change, message) -> None:
    raw = sample_event(EventType.NEW_WORK_ITEM_VERSION_COMPLETE)
    change(raw)
    with pytest.raises(MalformedRequest, match=message):
        parse_event(raw)


@pytest.mark.parametrize("content", ["not base64!", "\xe9\xe9==", "\u0661\u0662=="])
def test_bad_base64_content_is_named(content: str) -> None:
    raw = sample_event(EventType.POST_PROCESSING_EVENT)
    raw["data"]["documents"][0]["content"] = content
    with pytest.raises(MalformedRequest, match=r"data.documents\[0\].content: expected base64"):
        parse_event(raw)


def test_not_an_object() -> None:
    with pytest.raises(MalformedRequest, match="must be a JSON object, got list"):
        parse_event([])  # type: ignore[arg-type]
