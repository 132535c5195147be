"""The per-process cache of matched interview webhooks (`webhooks.targets`): every kind of
change made through the service is seen by the next match, a change made behind its back
(another process) within the TTL, and a read that may predate a commit is never kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.interview_hooks.hooks_support import Platform, make_hook, make_platform
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.events import EventType
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.store.schema import webhooks as webhooks_table
from docuhooks.webhooks import matching
from docuhooks.webhooks import service as webhooks
from docuhooks.webhooks.targets import MatchedWebhooks, PreparedWebhook, TargetCache

URL = "http://127.0.0.1:9"


def Monotonic() -> FakeClock:
    return FakeClock()


def cached(ctx: AppContext) -> FakeClock:
    clock = Monotonic()
    ctx.webhook_targets = TargetCache(ttl_seconds=5.0, settle_seconds=1.0, clock=clock)
    return clock


async def match(ctx: AppContext, platform: Platform) -> MatchedWebhooks:
    async with ctx.db.read() as conn:
        return await matching.interview_targets(
            ctx,
            conn,
            site_id=platform.principal.site_id,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            work_group_id=platform.work_item["work_group_id"],
            template_id=platform.template["id"],
        )


async def admin_of(ctx: AppContext, site: SiteUsers) -> Principal:
    async with ctx.db.read() as conn:
        admin = await identity.authenticate_token(
            conn, site.tokens["SiteAdministrator"], now=ctx.now()
        )
    assert admin is not None
    return admin


async def behind_its_back(ctx: AppContext, hook_id: str, **values: Any) -> None:
    """A change made through the store directly, as another process would make it."""
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks_table.update().where(webhooks_table.c.id == hook_id).values(**values)
        )


def urls(matched: MatchedWebhooks) -> list[str]:
    return [hook.url for hook in matched.webhooks]


async def kept(ctx: AppContext, clock: FakeClock, platform: Platform) -> MatchedWebhooks:
    """Match once the last change has settled, so the answer is kept, and check it is."""
    clock.advance(2.0)
    matched = await match(ctx, platform)
    assert len(ctx.webhook_targets) == 1
    return matched


async def test_every_change_through_the_service_is_seen_at_once(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = cached(ctx)
    platform = await make_platform(ctx, site)
    admin = await admin_of(ctx, site)
    first = await make_hook(ctx, site, f"{URL}/first", order=1)
    assert urls(await kept(ctx, clock, platform)) == [f"{URL}/first"]

    second = await make_hook(ctx, site, f"{URL}/second", order=0)
    assert urls(await match(ctx, platform)) == [f"{URL}/second", f"{URL}/first"]

    await kept(ctx, clock, platform)
    async with ctx.db.transaction() as conn:
        await webhooks.update(ctx, conn, admin, first.id, {"url": f"{URL}/moved", "order": -1})
    assert urls(await match(ctx, platform)) == [f"{URL}/moved", f"{URL}/second"]

    await kept(ctx, clock, platform)
    async with ctx.db.transaction() as conn:
        await webhooks.set_active(ctx, conn, admin, first.id, False)
    assert urls(await match(ctx, platform)) == [f"{URL}/second"]

    await kept(ctx, clock, platform)
    async with ctx.db.transaction() as conn:
        await webhooks.set_active(ctx, conn, admin, first.id, True)
    assert urls(await match(ctx, platform)) == [f"{URL}/moved", f"{URL}/second"]

    # Deactivated elsewhere (the worker, after a 410), then resumed here.
    await behind_its_back(ctx, first.id, active=False)
    clock.advance(10.0)
    assert urls(await kept(ctx, clock, platform)) == [f"{URL}/second"]
    async with ctx.db.transaction() as conn:
        await webhooks.resume(ctx, conn, admin, first.id)
    assert urls(await match(ctx, platform)) == [f"{URL}/moved", f"{URL}/second"]

    before = {hook.id: hook.secret for hook in (await kept(ctx, clock, platform)).webhooks}
    async with ctx.db.transaction() as conn:
        _, new_secret = await webhooks.regenerate_secret(ctx, conn, admin, second.id)
    after = {hook.id: hook.secret for hook in (await match(ctx, platform)).webhooks}
    assert after[second.id] != before[second.id]
    rotated = after[second.id]
    assert rotated is not None and rotated.value == new_secret
    assert after[first.id] == before[first.id]

    await kept(ctx, clock, platform)
    async with ctx.db.transaction() as conn:
        await webhooks.delete(ctx, conn, admin, first.id)
    assert urls(await match(ctx, platform)) == [f"{URL}/second"]


async def test_a_rolled_back_change_leaves_the_match_as_stored(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = cached(ctx)
    platform = await make_platform(ctx, site)
    admin = await admin_of(ctx, site)
    hook = await make_hook(ctx, site, f"{URL}/kept")
    await kept(ctx, clock, platform)
    try:
        async with ctx.db.transaction() as conn:
            await webhooks.set_active(ctx, conn, admin, hook.id, False)
            # Matched while the change is uncommitted: the old rows, and not kept.
            assert urls(await match(ctx, platform)) == [f"{URL}/kept"]
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert len(ctx.webhook_targets) == 0
    assert urls(await match(ctx, platform)) == [f"{URL}/kept"]


async def test_a_change_made_elsewhere_is_seen_within_the_ttl(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = cached(ctx)
    platform = await make_platform(ctx, site)
    hook = await make_hook(ctx, site, f"{URL}/old")
    assert urls(await kept(ctx, clock, platform)) == [f"{URL}/old"]
    await behind_its_back(ctx, hook.id, url=f"{URL}/new")
    clock.advance(4.9)
    assert urls(await match(ctx, platform)) == [f"{URL}/old"]
    clock.advance(0.1)
    assert urls(await match(ctx, platform)) == [f"{URL}/new"]


async def test_an_unreadable_secret_makes_that_webhook_unusable_alone(
    ctx: AppContext, site: SiteUsers
) -> None:
    cached(ctx)
    platform = await make_platform(ctx, site)
    broken = await make_hook(ctx, site, f"{URL}/broken", order=0)
    await make_hook(ctx, site, f"{URL}/fine", order=1)
    await behind_its_back(ctx, broken.id, secret_enc="not a fernet token")
    prepared = {hook.url: hook for hook in (await match(ctx, platform)).webhooks}
    assert prepared[f"{URL}/broken"].unusable is not None
    assert "cannot be decrypted" in (prepared[f"{URL}/broken"].unusable or "")
    assert prepared[f"{URL}/fine"].unusable is None
    try:
        prepared[f"{URL}/broken"].target("https://issuer.example", ctx.now())
    except ValueError as exc:
        assert "cannot be decrypted" in str(exc)
    else:
        raise AssertionError("an unusable webhook must not give a signing target")


async def test_the_previous_secret_signs_only_during_its_grace(
    ctx: AppContext, site: SiteUsers
) -> None:
    cached(ctx)
    platform = await make_platform(ctx, site)
    admin = await admin_of(ctx, site)
    hook = await make_hook(ctx, site, f"{URL}/rotating")
    async with ctx.db.transaction() as conn:
        await webhooks.regenerate_secret(ctx, conn, admin, hook.id, grace_period_seconds=60)
    (prepared,) = (await match(ctx, platform)).webhooks
    now = ctx.now()
    during = prepared.target("https://issuer.example", now)
    assert during.previous_secret is not None and during.previous_secret.value == hook.secret
    after = prepared.target("https://issuer.example", now + timedelta(seconds=61))
    assert after.previous_secret is None and after.secret == during.secret


def test_a_read_that_may_predate_a_commit_is_not_kept() -> None:
    clock = Monotonic()
    cache = TargetCache(ttl_seconds=5.0, settle_seconds=1.0, clock=clock)
    key = ("site", "InterviewLoadEvent", "group", "template", None)
    value = MatchedWebhooks((), "https://issuer.example")
    read_at = clock.monotonic()
    cache.site_changed("site")
    cache.put(key, value, read_at=read_at)
    assert cache.get(key) is None
    clock.advance(0.5)
    cache.put(key, value, read_at=clock.monotonic())
    assert cache.get(key) is None  # still settling
    clock.advance(0.6)
    cache.put(key, value, read_at=clock.monotonic())
    assert cache.get(key) is value
    other = ("other site", *key[1:])
    cache.put(other, value, read_at=clock.monotonic())
    cache.site_changed("site")
    assert cache.get(key) is None and cache.get(other) is value


def test_secrets_stay_out_of_a_prepared_webhooks_repr() -> None:
    from docuhooks.core.events import AuthMethod, Verb
    from docuhooks.core.signing import SigningSecret

    hook = PreparedWebhook(
        id="id",
        name="n",
        url=URL,
        verb=Verb.GET,
        auth_method=AuthMethod.ACCESS_TOKEN,
        timeout_seconds=5,
        accept_untrusted_ssl=False,
        secret=SigningSecret("kid", "whsec_top-secret-value"),
        access_token="the-access-token",
    )
    assert "top-secret" not in repr(hook) and "the-access-token" not in repr(hook)


async def test_counts_by_event_name_are_what_matching_selects_for_each_name(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The interview page counts each button's webhooks in one statement
    (`matching.counts_by_event_name`): the same webhooks `matching` selects for the name, by
    scope, activity and site."""
    platform = await make_platform(ctx, site)
    other = await make_platform(ctx, site)
    custom = "CustomInterviewEvent"
    await make_hook(ctx, site, URL, event_type=custom, interviewEventName="Look up client")
    await make_hook(
        ctx,
        site,
        URL,
        event_type=custom,
        interviewEventName="Look up client",
        templateIds=[platform.template["id"]],
    )
    await make_hook(
        ctx,
        site,
        URL,
        event_type=custom,
        interviewEventName="Look up client",
        workGroupIds=[other.work_item["work_group_id"]],
    )
    await make_hook(ctx, site, URL, event_type=custom, interviewEventName="Check", active=False)
    await make_hook(ctx, site, URL, event_type=custom, interviewEventName="Check")
    await make_hook(ctx, site, URL)  # another event type
    for where in (platform, other):
        scope = {
            "site_id": site.site_id,
            "work_group_id": where.work_item["work_group_id"],
            "template_id": where.template["id"],
        }
        async with ctx.db.read() as conn:
            counts = await matching.counts_by_event_name(conn, **scope)
            for name in ("Look up client", "Check", "Nothing"):
                matched = await matching.matching(
                    conn,
                    event_type=EventType.CUSTOM_INTERVIEW_EVENT,
                    interview_event_name=name,
                    **scope,
                )
                assert counts.get(name, 0) == len(matched), name
    assert counts == {"Look up client": 2, "Check": 1}  # the other work item's
