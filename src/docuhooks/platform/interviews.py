"""Interviews: open on a work item, change answers, fire interview
events, finish into a new completed version.

Opening and interview events call receivers (InterviewLoadEvent, CustomInterviewEvent) for
up to the interview budget, so those calls run outside any transaction: a person waits on
them, and a database write lock must not. The webhooks are matched inside the transaction
that opens the interview (or reads it, for an event), and their answers are applied
afterwards as changes, in one short write onto the answers as they are then, so an answer
the user saved meanwhile is not lost. A step whose webhooks change nothing writes nothing.

Every warning on an interview response has one shape (`interview_hooks.warnings`):
`{"source": "answers" | "webhook", "code", "message", "variable", "webhookId",
"webhookName"}`.

Finishing is one transaction: assemble → store documents → complete and write the
NewWorkItemVersionComplete event (see `completion`), or, when the site's post-processing
webhook selects the template, enter PostProcessing and leave the call and the completion to
a driver (see `platform.postprocessing`).

Every write here takes the work item's rows in the order `platform.workitems` gives: an
interview's version is held before the interview itself (`_hold_its_version`), as
completing the version holds it before closing its interviews.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.answers import (
    AnswerLimits,
    AnswerSet,
    check_overlay,
    heavy,
    measure,
    off_loop,
    parse_answer_payload,
    parse_stored,
    to_hotdocs_xml,
)
from docuhooks.answers.offload import INLINE_BYTES, values_size
from docuhooks.core import jsontext
from docuhooks.core.events import EventType
from docuhooks.errors import Conflict, NotFound
from docuhooks.identity.models import Principal
from docuhooks.interview_hooks import (
    HookResult,
    Problem,
    answer_warning,
    foreground_transaction,
    match_interview_hooks,
    run_interview_hooks,
    webhook_warning,
)
from docuhooks.platform import catalog, completion, storage, workitems
from docuhooks.platform import documents as documents_service
from docuhooks.platform.access import parse_id
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing import driver as post_processing_driver
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import interviews, templates, work_item_versions, work_items

OPEN = "open"
FINISHED = completion.INTERVIEW_FINISHED
#: An interview left open when another was opened on the same version.
REPLACED = "replaced"


def to_api(
    row: Any,
    version: sa.Row[Any],
    template: sa.Row[Any],
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": row.id,
        "workItemId": row.work_item_id,
        "workItemVersionId": row.version_id,
        "versionNumber": version.version_number,
        "status": row.status,
        "answers": row.answers,
        "eventElements": list(template.event_elements),
        "warnings": warnings or [],
        "createdDate": row.created_at,
        "createdBy": row.created_by,
        "finishedDate": row.finished_at,
    }


@dataclass(frozen=True, slots=True)
class _Loaded:
    interview: Any
    version: sa.Row[Any]
    work_item: sa.Row[Any]
    #: Without its document and its variables (`catalog.get_summary`): an interview step
    #: reads those only where it uses them, a large template's megabyte of definitions
    #: off the event loop (`catalog.stored_variables`, `catalog.read_variables`).
    template: Any


#: The interview's columns with its answers as the stored JSON text, not decoded: a large
#: answer set is decoded (or passed on as it is) where it is used, off the event loop.
_RAW_COLUMNS = [
    sa.cast(column, sa.Text).label(column.name) if column.name == "answers" else column
    for column in interviews.c
]


#: An interview's version (in the caller's site), found without holding the interview: the
#: version an interview belongs to never changes.
_HOLD_ITS_VERSION = Prepared(
    sa.select(work_item_versions.c.id)
    .where(
        work_item_versions.c.id
        == sa.select(interviews.c.version_id)
        .where(
            interviews.c.id == sa.bindparam("interview_id"),
            interviews.c.site_id == sa.bindparam("site_id"),
        )
        .scalar_subquery()
    )
    .with_for_update()
)


async def _hold_its_version(conn: AsyncConnection, interview_id: str, site_id: str) -> None:
    """Hold (PostgreSQL) the interview's version before the interview, to the end of the
    transaction: the order every writer of a work item's rows takes them in
    (`platform.workitems`). Completing the version holds it, then closes its open
    interviews; a writer that held the interview first would wait for the version while
    the completion waited for the interview. On SQLite, write transactions already run one
    at a time."""
    if conn.dialect.name == "postgresql":
        await _HOLD_ITS_VERSION.first(conn, {"interview_id": interview_id, "site_id": site_id})


async def _load(
    conn: AsyncConnection,
    principal: Principal,
    interview_id: str,
    *,
    lock: bool = False,
    raw: bool = False,
) -> _Loaded:
    """The interview with its work item, version and template (without its document and
    its variables). `raw`: the interview's answers are their stored JSON text
    (`_RAW_COLUMNS`), and the version's are not read. `lock` holds (PostgreSQL) its version,
    then the interview, to the end of the transaction."""
    interview_id = parse_id(interview_id, "interview")
    query = sa.select(*(_RAW_COLUMNS if raw else interviews.c)).where(
        interviews.c.id == interview_id, interviews.c.site_id == principal.site_id
    )
    if lock:
        await _hold_its_version(conn, interview_id, principal.site_id)
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"interview {interview_id} does not exist")
    item = await workitems.get_row(conn, principal, row.work_item_id)
    _, version = await workitems.get_version_row(
        conn, principal, item.id, row.version_id, answers=not raw
    )
    template = await catalog.get_summary(conn, principal, item.template_id)
    return _Loaded(row, version, item, template)


def _with_variables(template: Any, stored: Any) -> dict[str, Any]:
    """What the interview webhooks are given of the template: its summary, with its
    variables as `catalog.stored_variables` read them (kept, or the stored JSON text,
    which the hooks read off the event loop when large)."""
    return {
        "id": template.id,
        "name": template.name,
        "sha256": template.sha256,
        "variables": stored,
    }


def _require_open(loaded: _Loaded) -> None:
    if loaded.interview.status == REPLACED:
        raise Conflict(
            f"interview {loaded.interview.id} was replaced by a newer interview on version "
            f"{loaded.version.version_number}; continue in that one"
        )
    if loaded.interview.status != OPEN:
        raise Conflict(f"interview {loaded.interview.id} is already {loaded.interview.status}")


#: What an interview's answers take now: its copy and its version's. Its callers hold both
#: rows already, version first (`_hold_its_version`); they are held here again so that the
#: sizes read are the ones replaced, before the site's lock (`storage.admit`), which every
#: writer of the site takes after its rows (a document upload holds the version while it
#: waits).
_KEPT_SIZE = Prepared(
    sa.select((interviews.c.answers_size + work_item_versions.c.answers_size).label("size"))
    .select_from(
        interviews.join(work_item_versions, work_item_versions.c.id == interviews.c.version_id)
    )
    .where(interviews.c.id == sa.bindparam("interview_id"))
    .with_for_update()
)


async def _write_answers(
    ctx: PlatformContext, conn: AsyncConnection, loaded: _Loaded, text: bytes
) -> None:
    """The interview's answers are also the version's: both are written together, as the
    JSON text `text` (written as it is, not encoded again), with its size.

    Both copies count towards the site's storage quota, by what they grow: past it this
    is a `StorageQuotaExceeded` and nothing is written. The caller holds the interview
    locked, so its size read here is the one replaced."""
    size = len(text)
    kept = await _KEPT_SIZE.one(conn, {"interview_id": loaded.interview.id})
    await storage.admit(
        conn,
        storage.StorageQuota.from_settings(ctx.settings),
        loaded.interview.site_id,
        more_bytes=2 * size - int(kept.size),
        what="these answers (kept on the interview and on its version)",
    )
    body = orjson.Fragment(text)
    await conn.execute(
        interviews.update()
        .where(interviews.c.id == loaded.interview.id)
        .values(answers=body, answers_size=size)
    )
    await conn.execute(
        work_item_versions.update()
        .where(work_item_versions.c.id == loaded.version.id)
        .values(answers=body, answers_size=size)
    )


# Opening an interview is on a waiting person's path: its statements are built once, and
# the work item, its template (without the document) and its version in progress are read
# in one query, the work item held (PostgreSQL) so two opens cannot both start a version
# (the one that waited reads the versions again, `_continued`): `FOR NO KEY UPDATE`, which
# keeps out another open but not the key share of it a finish takes when it writes its
# version the second time (`workitems.get_row`).
_ITEM, _TEMPLATE, _VERSION = "item_", "template_", "version_"
# Not the document, and not the variables: those are read once per template and kept
# (`template_variables`), and a large template's list is not decoded again on every open.
_TEMPLATE_COLUMNS = [
    column for column in templates.c if column.name not in ("content", "variables")
]
_OPENING = Prepared(
    sa.select(
        *(column.label(_ITEM + column.name) for column in work_items.c),
        *(column.label(_TEMPLATE + column.name) for column in _TEMPLATE_COLUMNS),
        *(column.label(_VERSION + column.name) for column in workitems.SUMMARY_COLUMNS),
    )
    .select_from(
        work_items.outerjoin(
            templates,
            sa.and_(
                templates.c.id == work_items.c.template_id,
                templates.c.site_id == work_items.c.site_id,
            ),
        ).outerjoin(
            work_item_versions,
            sa.and_(
                work_item_versions.c.work_item_id == work_items.c.id,
                work_item_versions.c.status == VersionStatus.IN_PROGRESS.value,
            ),
        )
    )
    .where(
        work_items.c.id == sa.bindparam("work_item_id"),
        work_items.c.site_id == sa.bindparam("site_id"),
    )
    .order_by(work_item_versions.c.version_number.desc())
    .limit(1)
    .with_for_update(of=work_items, key_share=True)
)
# The version's status and answers, which the new interview copies, read with the version
# held (`FOR NO KEY UPDATE`) so that they are what is counted and copied: a save waiting for
# the site's lock while the open read the version (`_OPENING`, which does not read them) may
# have written others since, and a finish may have completed it. Held before the interview
# it replaces, as its other writers hold it (`_hold_its_version`), and before the site's
# lock, as a document upload holds the version while it waits for that lock: taken in the
# other order, each would wait for the other.
_HOLD_VERSION = Prepared(
    sa.select(
        work_item_versions.c.status,
        work_item_versions.c.answers,
        work_item_versions.c.answers_size,
    )
    .where(work_item_versions.c.id == sa.bindparam("version_id"))
    .with_for_update(key_share=True)
)
# The work item's version in progress, read again once the open holds the work item
# (PostgreSQL). `_OPENING` sees the versions as they were when it began, before it waited
# for the work item: an open it waited for may have started a version since (two opens
# would then each start one, two versions in progress), or, once a finish completed the
# one it found, started the next.
_IN_PROGRESS = Prepared(
    sa.select(*workitems.SUMMARY_COLUMNS)
    .where(
        work_item_versions.c.work_item_id == sa.bindparam("work_item_id"),
        work_item_versions.c.status == VersionStatus.IN_PROGRESS.value,
    )
    .order_by(work_item_versions.c.version_number.desc())
    .limit(1)
)
#: What a replaced interview keeps of its answers: none. Every save wrote them to its version
#: too, where the interview that replaces it continues them; a copy kept on each replaced
#: interview would count towards the site's storage quota for as long as the work item
#: lives (a person continuing a large interview day after day would fill it).
NO_ANSWERS = b'{"answers":[]}'
_REPLACE_OPEN = Prepared(
    interviews.update()
    .where(
        interviews.c.version_id == sa.bindparam("replaced_version_id"),
        interviews.c.status == OPEN,
    )
    .values(
        status=REPLACED,
        finished_at=sa.bindparam("replaced_at"),
        answers=sa.bindparam("no_answers", type_=interviews.c.answers.type),
        answers_size=len(NO_ANSWERS),
    )
)
# The new interview starts from its version's answers, copied by the database with their
# size: a large interview's answers are not encoded to JSON again to write what is there.
_COPIED = ("answers", "answers_size")
_INSERT = Prepared(
    interviews.insert().from_select(
        [column.name for column in interviews.c],
        sa.select(
            *(
                work_item_versions.c[column.name]
                if column.name in _COPIED
                else sa.bindparam(column.name, type_=column.type)
                for column in interviews.c
            )
        ).where(work_item_versions.c.id == sa.bindparam("version_id", type_=sa.String)),
    )
)


def _part(row: Any, prefix: str, columns: Any) -> Any:
    return SimpleNamespace(
        **{column.name: getattr(row, prefix + column.name) for column in columns}
    )


async def _opening(
    conn: AsyncConnection, principal: Principal, work_item_id: str
) -> tuple[Any, Any, Any | None]:
    """The work item, its template and its version in progress (None if there is none)."""
    work_item_id = parse_id(work_item_id, "work item")
    found = await _OPENING.first(conn, {"work_item_id": work_item_id, "site_id": principal.site_id})
    if found is None:
        raise NotFound(f"work item {work_item_id} does not exist")
    item = _part(found, _ITEM, work_items.c)
    if getattr(found, _TEMPLATE + "id") is None:
        raise NotFound(f"template {item.template_id} does not exist")
    template = _part(found, _TEMPLATE, _TEMPLATE_COLUMNS)
    if getattr(found, _VERSION + "id") is None:
        return item, template, None
    return item, template, _part(found, _VERSION, workitems.SUMMARY_COLUMNS)


async def _continued(
    conn: AsyncConnection, work_item_id: str, found: Any | None
) -> tuple[Any, sa.Row[Any]] | None:
    """The version in progress an open continues, `found` by `_OPENING` or read again, held
    with its status and answers (`_HOLD_VERSION`); None when there is none. The caller
    holds the work item, so no version starts meanwhile: what is read again is what the
    opens and finishes it waited for left. The one held may have been finished while this
    open waited for it; then there is none (or the next an open it waited for started)."""
    version = found
    if version is None and conn.dialect.name == "postgresql":
        version = await _IN_PROGRESS.first(conn, {"work_item_id": work_item_id})
    while version is not None:
        held = await _HOLD_VERSION.one(conn, {"version_id": version.id})
        if held.status == VersionStatus.IN_PROGRESS:
            return version, held
        version = await _IN_PROGRESS.first(conn, {"work_item_id": work_item_id})
    return None


async def open_interview(
    ctx: PlatformContext, principal: Principal, work_item_id: str, *, sources: bool = False
) -> dict[str, Any]:
    """Open an interview on the work item: it continues the version in progress, or starts
    the next one; then the InterviewLoadEvent webhooks may add answers. `sources` adds
    `answerSources`: which webhook supplied each answer (the web UI marks them)."""
    async with foreground_transaction(ctx) as conn:
        item, template, version = await _opening(conn, principal, work_item_id)
        moment = ctx.now()
        quota = storage.StorageQuota.from_settings(ctx.settings)
        continued = await _continued(conn, item.id, version)
        if continued is None:
            # None in progress: the next version starts, from the last finished one's answers.
            version = await workitems.start_version(conn, principal, item, now=moment, quota=quota)
            held = await _HOLD_VERSION.one(conn, {"version_id": version.id})
        else:
            version, held = continued
        await _REPLACE_OPEN.execute(
            conn,
            {
                "replaced_version_id": version.id,
                "replaced_at": moment,
                "no_answers": orjson.Fragment(NO_ANSWERS),
            },
        )
        # The interview keeps a copy of the answers (the one it replaces gives up its own).
        await storage.admit(
            conn,
            quota,
            principal.site_id,
            more_bytes=held.answers_size,
            what=f"the copy of version {version.version_number}'s answers a new interview keeps",
        )
        row = SimpleNamespace(
            id=str(uuid.uuid4()),
            site_id=principal.site_id,
            work_item_id=item.id,
            version_id=version.id,
            answers=held.answers,
            status=OPEN,
            created_at=moment,
            created_by=principal.user_id,
            finished_at=None,
        )
        await _INSERT.execute(conn, vars(row))
        matched = await match_interview_hooks(
            ctx,
            conn,
            site_id=principal.site_id,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            work_group_id=item.work_group_id,
            template_id=template.id,
        )
        # Its webhooks read the template's variables; without any they are not read.
        stored = await catalog.stored_variables(conn, template) if matched.webhooks else None
    loaded = _Loaded(row, version, item, template)
    if not matched.webhooks:
        return to_api(row, version, template)
    current = await _stored_answers(ctx, principal.site_id, held.answers)
    outcome = await run_interview_hooks(
        ctx,
        principal=principal,
        event_type=EventType.INTERVIEW_LOAD_EVENT,
        interview_id=row.id,
        work_item=item,
        version_id=version.id,
        template=_with_variables(template, stored),
        current_answers=current,
        matched=matched,
    )
    try:
        return await _apply_hook_outcome(ctx, loaded, current, outcome, sources=sources)
    except storage.StorageQuotaExceeded as exc:
        # The interview is open (and the one it replaced is not): a 422 would say nothing
        # was. It is shown as opened, without the webhooks' answers, saying why.
        body = to_api(row, version, template, [*outcome.warnings, *_not_kept(outcome, exc)])
        if sources:
            body["answerSources"] = {}
        return body


def _not_kept(outcome: HookResult, refused: storage.StorageQuotaExceeded) -> list[dict[str, Any]]:
    """A warning for each webhook whose answers an open did not keep, past the quota."""
    problem = Problem(refused.code, f"its answers were not saved: {refused.message.rstrip('.')}.")
    hooks = {source["webhookId"]: source["webhookName"] for source in outcome.sources.values()}
    return [webhook_warning(hook_id, name, problem) for hook_id, name in hooks.items()]


async def fire_event(
    ctx: PlatformContext,
    principal: Principal,
    interview_id: str,
    event_name: str,
    *,
    sources: bool = False,
) -> dict[str, Any]:
    """The user activated the interview event element `event_name`: the matching
    CustomInterviewEvent webhooks may add answers (`sources`: as `open_interview`)."""
    async with ctx.db.read() as conn:
        loaded = await _load(conn, principal, interview_id)
        _require_open(loaded)
        name = event_name.strip()
        if name not in loaded.template.event_elements:
            offered = ", ".join(repr(e) for e in loaded.template.event_elements) or "none"
            raise NotFound(
                f"template {loaded.template.name!r} has no interview event element named "
                f"{name!r} (it has: {offered})"
            )
        matched = await match_interview_hooks(
            ctx,
            conn,
            site_id=principal.site_id,
            event_type=EventType.CUSTOM_INTERVIEW_EVENT,
            work_group_id=loaded.work_item.work_group_id,
            template_id=loaded.template.id,
            interview_event_name=name,
        )
        if not matched.webhooks:
            return to_api(loaded.interview, loaded.version, loaded.template)
        stored = await catalog.stored_variables(conn, loaded.template)
    current = await _stored_answers(ctx, principal.site_id, loaded.interview.answers)
    outcome = await run_interview_hooks(
        ctx,
        principal=principal,
        event_type=EventType.CUSTOM_INTERVIEW_EVENT,
        interview_id=loaded.interview.id,
        work_item=loaded.work_item,
        version_id=loaded.version.id,
        template=_with_variables(loaded.template, stored),
        current_answers=current,
        interview_event_name=name,
        matched=matched,
    )
    return await _apply_hook_outcome(ctx, loaded, current, outcome, sources=sources)


async def _apply_hook_outcome(
    ctx: PlatformContext,
    loaded: _Loaded,
    before: AnswerSet,
    outcome: HookResult,
    *,
    sources: bool = False,
) -> dict[str, Any]:
    """Overlay what the webhooks changed (relative to `before`) onto the answers as they
    are now. The engine has already fitted them to the template; nothing changed, nothing
    written."""
    # The answers the webhooks left alone are the very objects `before` holds: only the
    # others need comparing, which matters when the interview has hundreds.
    changed = AnswerSet(
        answer
        for answer in outcome.answers.answers
        if (was := before.get(answer.name)) is not answer and was != answer
    )
    body = to_api(loaded.interview, loaded.version, loaded.template, outcome.warnings)
    if sources:
        body["answerSources"] = outcome.sources
    if not changed:
        return body
    if _stored_size(loaded.interview.answers) <= INLINE_BYTES:
        return await _write_hook_changes(ctx, loaded, changed, body)
    # A large interview's answers are read and written again in the parsing threads, under
    # one of the site's slots, taken before the write lock so that nothing waits holding it.
    async with heavy(loaded.interview.site_id, ctx.settings.answer_parse_threads):
        return await _write_hook_changes(ctx, loaded, changed, body)


async def _write_hook_changes(
    ctx: PlatformContext, loaded: _Loaded, changed: AnswerSet, body: dict[str, Any]
) -> dict[str, Any]:
    async with foreground_transaction(ctx) as conn:
        await _hold_its_version(conn, loaded.interview.id, loaded.interview.site_id)
        now = (
            await conn.execute(
                sa.select(interviews.c.status, interviews.c.answers)
                .where(interviews.c.id == loaded.interview.id)
                .with_for_update()
            )
        ).first()
        if now is None:
            raise NotFound(
                f"interview {loaded.interview.id} was deleted, with its work item, while its "
                "webhooks ran; their answers were not saved"
            )
        body["status"] = now.status
        if now.status != OPEN:
            # Replaced or finished while the webhooks ran: their answers come too late.
            body["answers"] = now.answers
            return body
        answers = await off_loop(
            _stored_size(now.answers),
            ctx.settings.answer_parse_threads,
            _overlaid_stored,
            now.answers,
            changed,
        )
        await _write_answers(ctx, conn, loaded, answers)
    # Written out as the text it is (`jsontext` passes a fragment on without encoding it).
    body["answers"] = orjson.Fragment(answers)
    return body


def _overlaid_stored(stored: Any, changed: AnswerSet) -> bytes:
    """The stored answers (decoded JSON) with `changed` overlaid, as answer JSON text."""
    return jsontext.dumpb(parse_stored(stored).overlay(changed).to_json())


async def get(conn: AsyncConnection, principal: Principal, interview_id: str) -> dict[str, Any]:
    """The interview as the API shows it. Its answers are the stored JSON, passed on as
    they are (an `orjson.Fragment`): they were canonical answer JSON when written, and a
    large interview's answers are neither decoded nor encoded again to be shown."""
    loaded = await _load(conn, principal, interview_id, raw=True)
    body = to_api(loaded.interview, loaded.version, loaded.template)
    body["answers"] = orjson.Fragment(loaded.interview.answers)
    return body


async def stored_answers_text(
    conn: AsyncConnection, principal: Principal, interview_id: str
) -> str:
    """The interview's answers as the stored JSON text, undecoded (decode it with
    `encode_answers`, off the loop when it is large)."""
    interview_id = parse_id(interview_id, "interview")
    text = (
        await conn.execute(
            sa.select(sa.cast(interviews.c.answers, sa.Text)).where(
                interviews.c.id == interview_id, interviews.c.site_id == principal.site_id
            )
        )
    ).scalar()
    if text is None:
        raise NotFound(f"interview {interview_id} does not exist")
    return str(text)


def encode_answers(stored: str, xml: bool) -> bytes:
    """Stored answers (JSON text) as canonical answer JSON, or HotDocs answer XML."""
    answers = parse_stored(json.loads(stored))
    return to_hotdocs_xml(answers) if xml else jsontext.dumpb(answers.to_json())


async def answers_document(
    ctx: PlatformContext, principal: Principal, stored: str, *, xml: bool
) -> bytes:
    """`encode_answers`, in the answer-parsing threads under the site's share of them when
    the answers are large (`answers.offload`)."""
    return await off_loop(
        len(stored),
        ctx.settings.answer_parse_threads,
        encode_answers,
        stored,
        xml,
        site=principal.site_id,
    )


async def update_answers(
    ctx: PlatformContext,
    principal: Principal,
    interview_id: str,
    *,
    body: bytes,
    content_type: str,
    expected: str | None = None,
) -> dict[str, Any]:
    """Overlay an answer set (canonical or shorthand JSON, or HotDocs XML, by
    `content_type`) onto the interview's answers. Answers that do not fit the
    template are left out, each with a warning naming its variable.

    With `expected` (the stored answers' text as the caller read them, `get`), the write
    happens only if they are still that text when the interview is locked, else
    `AnswersChanged` and nothing changes: a caller that built `body` from what it read (a
    repeated variable's rows, of which it changed a few) does not put back what another
    save wrote meanwhile.

    The answer set is read before the interview is locked, off the event loop when it is
    large (`answers.offload`): a large upload holds neither the loop nor the database's
    write lock while it is parsed. So is the rest of the heavy work when the upload or the
    interview's answers are large: the stored answers are read as JSON text and decoded,
    overlaid, measured and encoded again in the parsing threads, written as that text, and
    the response carries it as it is. All of it holds one of the site's slots (`heavy`), so
    one site's concurrent uploads wait for each other, not every site for them.

    It and the answers it makes are held to the answer-set limits (`AnswerLimitExceeded`:
    413 or 422 naming the limit); over one, nothing changes.
    """
    async with ctx.db.read() as conn:
        loaded = await _load(conn, principal, interview_id, raw=True)
        _require_open(loaded)
        stored = await catalog.stored_variables(conn, loaded.template)
    size = len(body) + len(loaded.interview.answers)
    if size <= INLINE_BYTES:
        return await _update_answers(
            ctx, principal, interview_id, loaded, stored, body, content_type, expected
        )
    async with heavy(principal.site_id, ctx.settings.answer_parse_threads):
        return await _update_answers(
            ctx, principal, interview_id, loaded, stored, body, content_type, expected
        )


class AnswersChanged(Conflict):
    """The interview's answers are no longer the ones the save was made from."""


async def _update_answers(
    ctx: PlatformContext,
    principal: Principal,
    interview_id: str,
    loaded: _Loaded,
    stored_variables: Any,
    body: bytes,
    content_type: str,
    expected: str | None = None,
) -> dict[str, Any]:
    limits = AnswerLimits.from_settings(ctx.settings)
    threads = ctx.settings.answer_parse_threads
    variables = await catalog.read_variables(ctx, loaded.template, stored_variables)
    parsed = await off_loop(
        len(body),
        threads,
        parse_answer_payload,
        body,
        content_type or "application/json",
        variables,
        limits,
    )
    async with ctx.db.transaction() as conn:
        loaded = await _load(conn, principal, interview_id, lock=True, raw=True)
        _require_open(loaded)
        stored = loaded.interview.answers
        if expected is not None and stored != expected:
            raise AnswersChanged(
                f"interview {loaded.interview.id}'s answers were saved by someone else "
                "while this save was made from them; nothing was saved"
            )
        merged = await off_loop(
            len(stored) + len(body), threads, _overlaid, stored, parsed.answers, limits
        )
        await _write_answers(ctx, conn, loaded, merged)
    result = to_api(
        loaded.interview,
        loaded.version,
        loaded.template,
        [answer_warning(warning) for warning in parsed.dropped],
    )
    result["answers"] = orjson.Fragment(merged)
    return result


def _overlaid(stored: str, incoming: AnswerSet, limits: AnswerLimits) -> bytes:
    """The stored answers (JSON text) with `incoming` overlaid, as canonical answer JSON
    text, within `limits`."""
    current = parse_stored(json.loads(stored))
    check_overlay(current, measure(current), incoming, limits)
    return jsontext.dumpb(current.overlay(incoming).to_json())


async def _stored_answers(ctx: PlatformContext, site: str, stored: Any) -> AnswerSet:
    """The stored answers, read in the parsing threads when there are many: a person waits
    on every interview step, and so do the other requests this process serves."""
    return await off_loop(
        _stored_size(stored), ctx.settings.answer_parse_threads, parse_stored, stored, site=site
    )


def _stored_size(stored: Any) -> int:
    """About how many bytes the stored answers are (`answers.offload.values_size`): a
    template of a few variables repeated deep holds tens of thousands of values in a
    handful of answers, which take most of a second to read."""
    entries = stored.get("answers") if isinstance(stored, dict) else None
    if not isinstance(entries, list):
        return 0
    return values_size(entry.get("value") if isinstance(entry, dict) else None for entry in entries)


async def finish(ctx: PlatformContext, principal: Principal, interview_id: str) -> dict[str, Any]:
    """Assemble the version from the interview's answers, post-process its documents, and
    complete it: the NewWorkItemVersionComplete event is written in the same transaction.

    A template that cannot be rendered with these answers is a 422 and changes nothing: the
    interview stays open so the answers can be corrected. The render runs in the render pool
    before the transaction (a render may take up to its time limit, and no lock is held that
    long); answers saved meanwhile mean the render is done again with them.

    The assembled document counts towards the site's storage quota like an upload: past it
    the finish is a 422 `storage_quota_exceeded` and changes nothing either (the interview
    stays open with its answers, to finish once there is room). A site already full is told
    so before the render.
    """
    quota = storage.StorageQuota.from_settings(ctx.settings)
    for _ in range(_FINISH_ATTEMPTS):
        async with ctx.db.read() as conn:
            rendered = await _load(conn, principal, interview_id)
            _require_open(rendered)
            if rendered.version.status != VersionStatus.IN_PROGRESS:
                raise Conflict(
                    f"version {rendered.version.version_number} is already "
                    f"{rendered.version.status}"
                )
            await storage.room_left(
                conn, quota, principal.site_id, what="the document this interview assembles"
            )
            document = await catalog.get_document(conn, principal, rendered.template.id)
            stored = await catalog.stored_variables(conn, rendered.template)
        answers = workitems.answers_of(rendered.interview)
        variables = await catalog.read_variables(ctx, rendered.template, stored)
        assembled = await ctx.render_pool.assemble(
            document.content, answers, tuple(variables.values()), site_id=principal.site_id
        )
        result = await _finish_assembled(ctx, principal, interview_id, rendered, assembled)
        if result is not None:
            return result
    raise Conflict(
        f"the answers of interview {interview_id} kept changing while it was being finished; "
        "finish it again"
    )


#: Renders `finish` does before giving up on answers that keep changing under it.
_FINISH_ATTEMPTS = 3
#: The finished version's answers are its interview's, copied with their size.
_FINISHED_ANSWERS = Prepared(
    work_item_versions.update()
    .where(work_item_versions.c.id == sa.bindparam("finished_version_id"))
    .values(
        {
            work_item_versions.c[name]: sa.select(interviews.c[name])
            .where(interviews.c.id == sa.bindparam("interview_id"))
            .scalar_subquery()
            for name in _COPIED
        }
    )
)


async def _finish_assembled(
    ctx: PlatformContext,
    principal: Principal,
    interview_id: str,
    rendered: _Loaded,
    assembled: bytes,
) -> dict[str, Any] | None:
    """Store `assembled` and complete (or post-process) the version; None when the answers
    changed since `rendered` was read, so `assembled` is out of date.

    One transaction, run again should PostgreSQL abort it to end a deadlock
    (`Database.retried`; the lock order of `platform.workitems` says why it may yet): the
    render is not done again, and nothing of an aborted run was kept."""
    finished = await ctx.db.retried(
        lambda conn: _store_and_complete(ctx, conn, principal, interview_id, rendered, assembled)
    )
    if finished is None:
        return None
    ctx.events_committed()
    if finished.post_processing:
        # The receiver is called after the commit, in the background: nobody waits for it.
        return await post_processing_driver.after_finish(
            ctx, principal, finished.work_item, finished.version_id, finished.result
        )
    return finished.result


@dataclass(frozen=True, slots=True)
class _Finished:
    """What a finishing transaction committed: the version as the API shows it, and whether
    it went into post-processing."""

    result: dict[str, Any]
    work_item: sa.Row[Any]
    version_id: str
    post_processing: bool


async def _store_and_complete(
    ctx: PlatformContext,
    conn: AsyncConnection,
    principal: Principal,
    interview_id: str,
    rendered: _Loaded,
    assembled: bytes,
) -> _Finished | None:
    try:
        # Its version, then the interview: the order of `platform.workitems`.
        loaded = await _load(conn, principal, interview_id, lock=True)
    except NotFound:
        # It was there before the render: its work item was deleted meanwhile.
        raise NotFound(
            f"interview {interview_id} was deleted, with its work item, while its "
            "document was being assembled; nothing was stored"
        ) from None
    _require_open(loaded)
    if (
        loaded.interview.answers != rendered.interview.answers
        or loaded.template.sha256 != rendered.template.sha256
    ):
        return None
    _, version = await workitems.get_version_row(
        conn, principal, loaded.work_item.id, loaded.version.id, lock=True
    )
    if version.status != VersionStatus.IN_PROGRESS:
        raise Conflict(f"version {version.version_number} is already {version.status}")
    # The version keeps the answers it was finished with: the interview's, copied by the
    # database. Every save writes both, so this adds nothing to what the site keeps
    # unless they differ, and then it is held to the quota like a save.
    quota = storage.StorageQuota.from_settings(ctx.settings)
    await storage.admit(
        conn,
        quota,
        principal.site_id,
        more_bytes=loaded.interview.answers_size - version.answers_size,
        what=f"the answers of version {version.version_number}",
    )
    await _FINISHED_ANSWERS.execute(
        conn, {"interview_id": loaded.interview.id, "finished_version_id": version.id}
    )
    moment: datetime = ctx.now()
    stored = await documents_service.store_assembled(
        conn,
        version,
        [
            documents_service.NewDocument(
                name=loaded.template.name,
                file_name=catalog.docx_file_name(loaded.template.file_name),
                content_type=documents_service.DOCX,
                content=assembled,
            )
        ],
        now=moment,
        quota=quota,
    )
    post_processing = await post_processing_driver.begin(
        ctx,
        conn,
        principal,
        work_item=loaded.work_item,
        version=version,
        template=loaded.template,
        now=moment,
    )
    if not post_processing:
        await completion.complete_version(
            conn,
            principal,
            work_item=loaded.work_item,
            version=version,
            template=loaded.template,
            documents=stored,
            now=moment,
        )
    result = await completion.version_with_documents(conn, principal, loaded.work_item, version.id)
    return _Finished(result, loaded.work_item, version.id, post_processing)
