"""The answer-set limits over the API, with small limits so the documents stay small: every
route that takes an answer set answers 413 or 422 naming the limit (and the answer, when
the limit is about one), and changes nothing."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest
from tests.platform.platform_client import open_interview, work_item
from tests.support import SiteUsers

from docuhooks.settings import Settings

KIB = 1024
JSON = {"Content-Type": "application/json"}
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        max_json_body_bytes=16 * KIB,
        max_answer_set_bytes=64 * KIB,
        max_answer_value_bytes=20 * KIB,
        max_answers=4,
        max_answer_values_per_answer=5,
        max_answer_values=8,
    )


def error_of(response: httpx.Response, status: int, limit: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert limit in error["message"], error
    return error


def xml_text(name: str, text: str) -> bytes:
    return (
        f'<AnswerSet version="1.1"><Answer name="{name}"><TextValue>{text}</TextValue>'
        "</Answer></AnswerSet>"
    ).encode()


class Interview:
    def __init__(self, client: httpx.AsyncClient, site: SiteUsers, body: dict[str, Any]) -> None:
        self.client, self.user = client, site.auth("User")
        self.url = f"/api/v1/interviews/{body['id']}/answers"

    async def put(self, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.put(self.url, content=content, headers=headers | self.user)

    async def answers(self) -> dict[str, Any]:
        read = await self.client.get(self.url, headers=self.user)
        return {a["name"]: a["value"] for a in read.json()["answers"]}


@pytest.fixture
async def interview(client: httpx.AsyncClient, site: SiteUsers) -> Interview:
    item = await work_item(client, site.auth())
    return Interview(client, site, await open_interview(client, site, item))


@pytest.mark.parametrize("headers", [JSON, XML], ids=["json", "xml"])
async def test_an_answer_set_over_the_size_limit_is_a_413(
    interview: Interview, headers: dict[str, str]
) -> None:
    big = "x" * (65 * KIB)
    body = json.dumps({"Client Name": big}).encode() if headers is JSON else xml_text("a", big)
    error = error_of(await interview.put(body, headers), 413, "max_answer_set_bytes")
    assert error["code"] == "payload_too_large"
    assert await interview.answers() == {}


async def test_an_answer_set_takes_its_own_limit_not_the_json_bodies_one(
    interview: Interview,
) -> None:
    # 17 KiB of JSON: over max_json_body_bytes (16 KiB), within max_answer_set_bytes.
    text = "y" * (17 * KIB)
    ok = await interview.put(json.dumps({"Child Name": [text]}).encode(), JSON)
    assert ok.status_code == 200, ok.text
    assert await interview.answers() == {"Child Name": [text]}


@pytest.mark.parametrize("headers", [JSON, XML], ids=["json", "xml"])
async def test_a_value_over_its_limit_is_a_413_naming_the_answer(
    interview: Interview, headers: dict[str, str]
) -> None:
    text = "z" * (20 * KIB + 1)
    body = (
        json.dumps({"Client Name": text}).encode()
        if headers is JSON
        else xml_text("Client Name", text)
    )
    error = error_of(await interview.put(body, headers), 413, "max_answer_value_bytes")
    assert '"Client Name"' in error["details"][0]["field"]


async def test_too_many_answers_or_values_is_a_422(interview: Interview) -> None:
    many = {"Client Name": "a", "Fee": 1, "Is Company": True, "Start Date": "2026-01-01"}
    error = error_of(
        await interview.put(json.dumps(many | {"Shoe Size": 1}).encode(), JSON), 422, "max_answers"
    )
    assert error["code"] == "answer_limit_exceeded"
    error = error_of(
        await interview.put(json.dumps({"Child Name": list("abcdef")}).encode(), JSON),
        422,
        "max_answer_values_per_answer",
    )
    assert '"Child Name"' in error["details"][0]["field"]
    canonical = {
        "answers": [
            {"name": "Child Name", "type": "text", "value": list("abcde")},
            {"name": "Colours", "type": "multiplechoice", "value": [["Red"]] * 4},
        ]
    }
    error_of(await interview.put(json.dumps(canonical).encode(), JSON), 422, "max_answer_values")
    assert await interview.answers() == {}


async def test_answers_built_up_piece_by_piece_are_held_to_the_same_limits(
    interview: Interview,
) -> None:
    text = "w" * (16 * KIB)
    first = await interview.put(json.dumps({"Child Name": [text] * 3}).encode(), JSON)
    assert first.status_code == 200, first.text
    # Alone it fits; with what the interview holds it would be over 64 KiB.
    error_of(
        await interview.put(json.dumps({"Client Name": text}).encode(), JSON),
        413,
        "max_answer_set_bytes",
    )
    assert await interview.answers() == {"Child Name": [text] * 3}
    # Replacing an answer does not add to the others: this fits.
    replaced = await interview.put(json.dumps({"Child Name": [text], "Fee": 3}).encode(), JSON)
    assert replaced.status_code == 200, replaced.text
    # Five answers in all would be over max_answers (4), though each PUT holds fewer.
    more = {"Client Name": "a", "Is Company": True}
    assert (await interview.put(json.dumps(more).encode(), JSON)).status_code == 200
    error_of(
        await interview.put(json.dumps({"Start Date": "2026-01-01"}).encode(), JSON),
        422,
        "max_answers",
    )


@pytest.mark.parametrize("encoding", ["UTF-7", "UTF-32", "Shift_JIS", "EUC-JP", "no-such"])
async def test_answer_xml_in_an_unsupported_encoding_is_a_422_saying_so(
    interview: Interview, encoding: str
) -> None:
    body = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + xml_text("Fee", "1")
    refused = await interview.put(body, XML)
    assert refused.status_code == 422, refused.text
    assert f"encoding '{encoding}' is not supported" in refused.json()["error"]["message"]


async def test_quick_documents_are_held_to_the_same_limits(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    url = f"/api/v1/templates/{item['templateId']}/assemble"
    user = site.auth("User")

    async def assemble(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await client.post(url, content=body, headers=headers | user)

    error_of(await assemble(xml_text("a", "x" * (65 * KIB)), XML), 413, "max_answer_set_bytes")
    error_of(
        await assemble(json.dumps({"Client Name": "z" * (20 * KIB + 1)}).encode(), JSON),
        413,
        "max_answer_value_bytes",
    )
    many = {"Client Name": "a", "Fee": 1, "Is Company": True, "Start Date": "2026-01-01", "X": 1}
    error_of(await assemble(json.dumps(many).encode(), JSON), 422, "max_answers")
    # Within the limits, and over the JSON bodies' limit: assembled.
    ok = await assemble(json.dumps({"Child Name": ["c" * (17 * KIB)]}).encode(), JSON)
    assert ok.status_code == 200, ok.text
