"""The application context: the long-lived parts every service needs, built once at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from docuhooks.core.clock import Clock, SystemClock
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.proxy import ProxyRoutes
from docuhooks.delivery.site_slots import SiteSlots
from docuhooks.delivery.transport import (
    DEFAULT_MAX_BODY,
    HttpTransport,
    Transport,
    TransportResult,
)
from docuhooks.identity.secrets import SecretBox
from docuhooks.identity.service import TokenCache
from docuhooks.identity.throttle import LoginThrottle
from docuhooks.settings import Settings, SettingsError
from docuhooks.store.database import Database
from docuhooks.webhooks.targets import TargetCache

if TYPE_CHECKING:
    from docuhooks.core.signing import OutboundRequest
    from docuhooks.interview_hooks.log import LogWriter
    from docuhooks.platform.postprocessing.driver import PostProcessor
    from docuhooks.platform.renderpool import RenderPool


@dataclass
class AppContext:
    settings: Settings
    db: Database
    box: SecretBox
    #: The one clock every part reads (`core.clock`); tests put a `FakeClock` here to move
    #: time without sleeping.
    clock: Clock = field(default_factory=SystemClock)
    #: A transport for every outbound call, in place of the real ones (a test seam).
    transport_override: Transport | None = None
    #: Each site's interactive calls in flight (`interactive_calls_per_site`); built on first use.
    _interactive_slots: SiteSlots | None = field(default=None, init=False, repr=False)
    #: The real transports, built on first use (they need the running event loop).
    _transports: dict[str, Transport] = field(default_factory=dict, init=False, repr=False)
    #: Hooks other parts register at start-up (e.g. "wake the worker after an event commits").
    on_events_committed: list[Callable[[], Any]] = field(default_factory=list)
    #: The interview delivery-log writer while the app runs it (`start_log_writer`); without
    #: it each interview step writes its own log before returning.
    interview_log: LogWriter | None = None
    #: The post-processing driver while the app runs it (`start_post_processor`); without it
    #: finishing an interview calls the post-processing webhook before returning.
    post_processor: PostProcessor | None = None
    #: Worker processes that inspect and render templates (`render_pool`); built on first use.
    render_pool_override: RenderPool | None = None
    #: Wrong-password counts per login name and client address (sign-in throttling).
    login_throttle: LoginThrottle = field(init=False)
    #: Principals of recently used API tokens (a revoked token works for up to its TTL).
    tokens: TokenCache = field(init=False)
    #: Interview webhooks matched and ready to sign (a change elsewhere is seen within its TTL).
    webhook_targets: TargetCache = field(init=False)

    def __post_init__(self) -> None:
        # The caches read time through the context, so replacing `clock` moves theirs too.
        self.login_throttle = LoginThrottle(clock=self)
        self.tokens = TokenCache(clock=self)
        self.webhook_targets = TargetCache(clock=self)

    def now(self) -> datetime:
        """The wall clock's time now (aware UTC)."""
        return self.clock.now()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        # The settings refused every value of theirs that cannot work when they loaded; an
        # unusable proxy, which the environment may name too, stops the start here, named,
        # rather than failing the first outbound call.
        outbound_proxies(settings)
        db = database_of(settings)
        box = SecretBox.for_data_dir(settings.secret_key, settings.data_dir)
        return cls(settings=settings, db=db, box=box)

    @property
    def address_policy(self) -> AddressPolicy:
        """The outbound address policy: the operator's allow-list, plus loopback in dev mode."""
        policy = AddressPolicy.from_setting(self.settings.allowed_networks)
        if self.settings.dev_mode:
            policy = AddressPolicy.allowing([*policy.allowed_networks, "127.0.0.0/8", "::1/128"])
        return policy

    @property
    def transport(self) -> Transport:
        """Notification deliveries (the worker): one pooled transport per process."""
        return self._transport("notifications")

    @property
    def interactive_transport(self) -> Transport:
        """Calls a person or a version waits for (interview hooks, post-processing, test
        sends): a connection pool of their own, so that a notification backlog to the same
        host never holds the connections they need."""
        return self._transport("interactive")

    @property
    def interactive_slots(self) -> SiteSlots:
        """The per-site limit every interactive send passes (`interactive_send`): one site's
        calls to receivers that never answer cannot hold the pool the other sites need."""
        if self._interactive_slots is None:
            self._interactive_slots = SiteSlots(self.settings.interactive_calls_per_site)
        return self._interactive_slots

    async def interactive_send(
        self,
        site_id: str,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the call's own timeout, a wait for a slot included
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        """Send an interactive call of `site_id`'s over `interactive_transport` once one of
        the site's slots is free; a call that finds none within `timeout` is a ``timeout``
        failure naming the limit (`delivery.site_slots`)."""
        return await self.interactive_slots.send(
            self.interactive_transport,
            site_id,
            request,
            timeout=timeout,
            verify_tls=verify_tls,
            max_body=max_body,
        )

    def _transport(self, purpose: str) -> Transport:
        if self.transport_override is not None:
            return self.transport_override
        transport = self._transports.get(purpose)
        if transport is None:
            settings = self.settings
            per_host = settings.connections_per_host
            proxies = outbound_proxies(settings)
            limit = max(200, per_host)
            transport = self._transports[purpose] = HttpTransport(
                self.address_policy,
                # Interactive calls are held to their site's slots (`interactive_slots`), not
                # to a number per host: one site's calls to its own path on a host many
                # tenants share would otherwise take every connection to that host, and
                # another site's interview would wait for one.
                limit_per_host=limit if purpose == "interactive" else per_host,
                limit=limit,
                connect_timeout=settings.connect_timeout_seconds,
                proxies=proxies,
            )
        return transport

    async def close_transports(self) -> None:
        """Close the real transports' pools; the next call builds fresh ones."""
        transports, self._transports = self._transports, {}
        for transport in transports.values():
            await transport.close()

    @property
    def render_pool(self) -> RenderPool:
        """The process's render pool: templates from users are inspected and rendered only
        there, bounded in time, memory and output (`platform.renderpool`)."""
        if self.render_pool_override is None:
            from docuhooks.platform.renderpool import RenderPool

            self.render_pool_override = RenderPool.from_settings(self.settings)
        return self.render_pool_override

    async def close(self) -> None:
        if self.render_pool_override is not None:
            await self.render_pool_override.close()
            self.render_pool_override = None
        await self.close_transports()
        if self.transport_override is not None:
            await self.transport_override.close()
            self.transport_override = None
        await self.db.dispose()

    def events_committed(self) -> None:
        for hook in self.on_events_committed:
            hook()


def outbound_proxies(settings: Settings) -> ProxyRoutes:
    """The egress proxy routes: `outbound_proxy` when set, else the ``HTTPS_PROXY`` and
    ``HTTP_PROXY`` environment variables, as curl reads them. Raises SettingsError naming
    the setting or variable that is not a usable proxy URL."""
    try:
        return ProxyRoutes.configure(
            settings.outbound_proxy, settings.outbound_no_proxy, os.environ
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def database_of(settings: Settings) -> Database:
    """The installation's database as `settings` describe it (which checked its URLs and
    options when they loaded)."""
    return Database.from_url(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pooler=settings.database_pooler,
        listen_url=settings.database_listen_url,
        direct_url=settings.database_direct_url,
    )
