"""Log in: exchange a password for an API token."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from docuhooks.api.deps import Conn
from docuhooks.api.models import ERRORS, Input, Output
from docuhooks.errors import Unauthorized
from docuhooks.identity import service as identity

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERRORS)


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
async def create_token(body: TokenRequest, conn: Conn) -> TokenResponse:
    who = await identity.login(conn, body.loginName, body.password)
    if who is None:
        raise Unauthorized("login name or password is wrong")
    token = await identity.create_token(conn, login_name=who.login_name, name=body.name)
    return TokenResponse(token=token, userId=who.user_id, siteId=who.site_id)


@router.post("/service-principal-login", status_code=201, response_model=TokenResponse)
async def service_principal_login(body: ServicePrincipalLogin, conn: Conn) -> TokenResponse:
    who = await identity.service_principal_login(
        conn, body.clientName, body.principalName, body.password
    )
    if who is None:
        raise Unauthorized("client name, principal name or password is wrong")
    token = await identity.create_token(conn, login_name=who.login_name, name="service principal")
    return TokenResponse(token=token, userId=who.user_id, siteId=who.site_id)
