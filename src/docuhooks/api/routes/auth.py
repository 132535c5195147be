"""Log in: exchange a password for an API token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from docuhooks.api.deps import Ctx, client_address
from docuhooks.api.models import ERRORS, ErrorResponse, Input, Output
from docuhooks.errors import Unauthorized
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.identity.throttle import guarded

router = APIRouter(
    prefix="/api/v1/auth",
    tags=["auth"],
    responses={
        **ERRORS,
        429: {"model": ErrorResponse, "description": "Too many wrong passwords; see Retry-After"},
    },
)


class TokenRequest(Input):
    loginName: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field(default="", max_length=200, description="A label for the token")


class ServicePrincipalLogin(Input):
    clientName: str = Field(min_length=1, max_length=200)
    principalName: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(Output):
    token: str
    tokenType: str = "Bearer"
    userId: str
    siteId: str


@router.post("/tokens", status_code=201, response_model=TokenResponse)
async def create_token(body: TokenRequest, request: Request, ctx: Ctx) -> TokenResponse:
    async def attempt() -> Principal | None:
        async with ctx.db.read() as conn:
            return await identity.login(conn, body.loginName, body.password)

    # No transaction is held while the password is checked: a wrong one is counted in a
    # transaction of its own (`guarded`), which must not wait on the request's.
    who = await guarded(
        ctx.login_throttle, ctx.db, body.loginName, client_address(request), attempt
    )
    if who is None:
        raise Unauthorized("login name or password is wrong")
    async with ctx.db.transaction() as conn:
        token = await identity.create_token(
            conn, login_name=who.login_name, name=body.name, now=ctx.now()
        )
    return TokenResponse(token=token, userId=who.user_id, siteId=who.site_id)


@router.post("/service-principal-login", status_code=201, response_model=TokenResponse)
async def service_principal_login(
    body: ServicePrincipalLogin, request: Request, ctx: Ctx
) -> TokenResponse:
    async def attempt() -> Principal | None:
        async with ctx.db.read() as conn:
            return await identity.service_principal_login(
                conn, body.clientName, body.principalName, body.password
            )

    # Counted against the accounts the name designates (as `POST /tokens` and the web UI
    # count them), not against the names as typed: spaces around them, the display name for
    # the login name or the site's name for the client's would each start a fresh count.
    async with ctx.db.read() as conn:
        accounts = await identity.service_principal_login_names(conn, body.principalName)
    if not accounts:
        accounts = [f"{body.clientName.strip()}/{body.principalName.strip()}"]
    who = await guarded(
        ctx.login_throttle,
        ctx.db,
        accounts[0],
        client_address(request),
        attempt,
        also=accounts[1:],
    )
    if who is None:
        raise Unauthorized("client name, principal name or password is wrong")
    async with ctx.db.transaction() as conn:
        token = await identity.create_token(
            conn, login_name=who.login_name, name="service principal", now=ctx.now()
        )
    return TokenResponse(token=token, userId=who.user_id, siteId=who.site_id)
