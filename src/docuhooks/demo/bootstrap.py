"""Setting the demo up: its data directory, the site, an administrator, and everything the
walk-through needs, created through the public REST API as an integrator would.

What cannot be read back later (the password, the token, webhook secrets) is kept in the
data directory's `demo-state.json`, so a second `docuhooks demo` continues the same site.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from docuhooks.context import AppContext
from docuhooks.demo import template
from docuhooks.identity import service as identity
from docuhooks.store.private_files import make_private_dir, write_private_file

STATE_FILE = "demo-state.json"
ANSWERS_FILE = "receiver-answers.json"
#: The receiver's secrets, one a line, for running `docuhooks listen --secret-file` alone.
SECRETS_FILE = "receiver-secrets.txt"
ADMIN_LOGIN = "ann@demo.example"
ADMIN_NAME = "Ann Lee"
#: Files a demo directory may hold; --reset deletes nothing else.
_DEMO_FILES = {
    STATE_FILE,
    ANSWERS_FILE,
    SECRETS_FILE,
    "secret.key",
    "docuhooks.db",
    "docuhooks.db-wal",
    "docuhooks.db-shm",
}


class DemoError(Exception):
    """The demo cannot go on; the message says what to do."""


@dataclass
class DemoWebhook:
    id: str
    name: str
    event_type: str
    #: The HMAC / whsec_ secret or the access token the receiver verifies with.
    secret: str


@dataclass
class DemoState:
    server_port: int
    receiver_port: int
    auth_method: str
    site_id: str = ""
    password: str = ""
    token: str = ""
    template_id: str = ""
    work_group_id: str = ""
    work_item_id: str = ""
    webhooks: list[DemoWebhook] = field(default_factory=list)

    @classmethod
    def read(cls, data_dir: Path) -> DemoState | None:
        path = data_dir / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        hooks = [DemoWebhook(**hook) for hook in raw.pop("webhooks")]
        return cls(**raw, webhooks=hooks)

    def write(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE
        # It holds a password, an API token and webhook secrets: readable by the owner only.
        write_private_file(path, json.dumps(asdict(self), indent=2))

    @property
    def bootstrapped(self) -> bool:
        return bool(self.work_item_id and self.webhooks)


def prepare_data_dir(data_dir: Path, *, reset: bool) -> None:
    """Make `data_dir` ready; with `reset`, empty it first, but only if it is a demo's."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DemoError(f"{data_dir} is a file; choose another --data-dir")
    present = {p.name for p in data_dir.iterdir()} if data_dir.exists() else set()
    # The walk-through saves each assembled letter as a .docx beside the database.
    foreign = {name for name in present - _DEMO_FILES if not name.endswith(".docx")}
    if foreign and (reset or STATE_FILE not in present):
        raise DemoError(
            f"{data_dir} holds files that are not the demo's ({', '.join(sorted(foreign)[:3])}); "
            "choose another --data-dir"
        )
    if reset and present:
        shutil.rmtree(data_dir)
    if not reset and present and STATE_FILE not in present:
        raise DemoError(f"{data_dir} holds an unfinished demo; start over with --reset")
    make_private_dir(data_dir)


def write_receiver_answers(data_dir: Path, today: date) -> Path:
    """The receiver's answer file (the format of `docuhooks listen --answers`): a prefill for
    InterviewLoadEvent, and a client table the "Look up client" button looks up by name."""
    path = data_dir / ANSWERS_FILE
    if not path.exists():
        answers = {
            "InterviewLoadEvent": {
                "Client Name": "Jane Smith",
                "Letter Date": today.isoformat(),
            },
            template.LOOKUP_BUTTON: {
                "lookup": "Client Name",
                "rows": {
                    "Jane Smith": {
                        "Is Company": False,
                        "Services": ["Tax returns", "Payroll"],
                        "Fee": 1500,
                        "Contact Name": ["Ann Lee", "Omar Haddad"],
                    },
                    "Acme Ltd": {
                        "Is Company": True,
                        "Services": ["Bookkeeping", "Audit"],
                        "Fee": 12000,
                        "Contact Name": ["Omar Haddad"],
                    },
                },
            },
        }
        write_private_file(path, json.dumps(answers, indent=2) + "\n")
    return path


class Api:
    """The public REST API, as the demo's administrator calls it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """The JSON reply of `method path`; any other status than `expect` is a DemoError."""
        url = path if path.startswith("http") else f"{self.base_url}/api/v1{path}"
        async with self.session.request(method, url, headers=self.headers, **kwargs) as response:
            body = await response.read()
            if response.status != expect:
                raise DemoError(
                    f"{method} {url} answered {response.status}, expected {expect}: "
                    f"{body[:500].decode('utf-8', 'replace')}"
                )
            if response.content_type == "application/json":
                return json.loads(body)
            return body


async def create_site_and_admin(ctx: AppContext, state: DemoState, base_url: str) -> None:
    """The site, its administrator (with a password for logging in) and an API token."""
    state.password = secrets.token_urlsafe(12)
    async with ctx.db.transaction() as conn:
        now = ctx.now()
        state.site_id = await identity.create_site(conn, name="Demo", base_url=base_url, now=now)
        await identity.create_user(
            conn,
            site_id=state.site_id,
            login_name=ADMIN_LOGIN,
            name=ADMIN_NAME,
            roles=["SiteAdministrator"],
            password=state.password,
            now=now,
        )
        state.token = await identity.create_token(
            conn, login_name=ADMIN_LOGIN, name="demo", now=now
        )


async def move_site(ctx: AppContext, state: DemoState, base_url: str) -> None:
    """Another --port on a later run: the site's address (its JWT issuer) follows it."""
    async with ctx.db.transaction() as conn:
        await identity.set_site_base_url(conn, state.site_id, base_url)


async def create_platform_objects(api: Api, state: DemoState) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "file",
        template.build_docx(),
        filename=template.FILE_NAME,
        content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    form.add_field("definition", json.dumps(template.definition()))
    uploaded = await api.call("POST", "/templates", data=form, expect=201)
    state.template_id = uploaded["id"]
    group = await api.call("POST", "/workgroups", json={"name": "Clients"}, expect=201)
    state.work_group_id = group["id"]
    item = await api.call(
        "POST",
        "/workitems",
        json={"workGroupId": group["id"], "templateId": uploaded["id"], "name": "Jane Smith"},
        expect=201,
    )
    state.work_item_id = item["id"]


#: (event type, webhook name, receiver path)
WEBHOOKS = (
    ("InterviewLoadEvent", "Demo: prefill the interview", "/hooks/prefill"),
    ("CustomInterviewEvent", "Demo: look up client", "/hooks/lookup"),
    ("PostProcessingEvent", "Demo: post-processing", "/hooks/post-processing"),
    ("NewWorkItemVersionComplete", "Demo: archive new versions", "/hooks/new-version"),
)


async def create_webhooks(api: Api, state: DemoState, receiver_url: str) -> None:
    """One webhook of each type, all pointing at the demo's receiver."""
    for event_type, name, path in WEBHOOKS:
        body: dict[str, Any] = {
            "name": name,
            "url": receiver_url + path,
            "eventType": event_type,
            "authenticationMethod": state.auth_method,
        }
        if event_type == "CustomInterviewEvent":
            body["interviewEventName"] = template.LOOKUP_BUTTON
        if event_type == "PostProcessingEvent":
            body["templateIds"] = [state.template_id]
        if state.auth_method == "StandardWebhooks":
            body["requestVerb"] = "POST"  # Standard Webhooks signs a body, so never GET
        access_token = None
        if state.auth_method == "AccessToken":
            access_token = body["accessToken"] = secrets.token_urlsafe(24)
        created = await api.call("POST", "/webhooks", json=body, expect=201)
        secret = access_token or created["secret"]
        state.webhooks.append(DemoWebhook(created["id"], name, event_type, secret))


async def point_webhooks_at(api: Api, state: DemoState, receiver_url: str) -> None:
    """On a later run the receiver may listen elsewhere: move the webhooks with it."""
    paths = {event_type: path for event_type, _, path in WEBHOOKS}
    for hook in state.webhooks:
        url = receiver_url + paths[hook.event_type]
        current = await api.call("GET", f"/webhooks/{hook.id}")
        if current["url"] != url:
            await api.call("PATCH", f"/webhooks/{hook.id}", json={"url": url})
