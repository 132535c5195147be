"""The SDK installs and runs without the server: standard library and PyJWT only.

In this environment, importing it loads nothing else; and the `docuhooks-receiver`
distribution (receiver/), installed by pip into a new venv with its declared dependencies,
verifies real calls signed by docuhooks with nothing of the server installed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from live_receivers import LiveReceiver
from receiver_samples import WEBHOOK_ID, target

import docuhooks
from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import SigningSecret

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = ROOT / "receiver"

PROBE = """
import sys
import jwt  # whatever PyJWT itself loads (cryptography, when installed) is PyJWT's business
before = set(sys.modules)
import docuhooks_receiver
from docuhooks_receiver import *
loaded = sorted(
    name.split(".")[0] if not name.startswith("docuhooks") else name
    for name in set(sys.modules) - before
)
print("\\n".join(loaded))
"""


def test_receiver_imports_only_the_standard_library_and_pyjwt() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True
    ).stdout.split()
    foreign = {
        name
        for name in out
        if not name.startswith("docuhooks_receiver")
        and name != "jwt"
        and name.split(".")[0] not in sys.stdlib_module_names
        and not name.startswith("_")
    }
    assert foreign == set(), f"the receiver SDK pulled in {sorted(foreign)}"
    assert "docuhooks" not in out, "the receiver SDK imported the server's package"
    assert "docuhooks_receiver.fastapi" not in out
    assert "docuhooks_receiver.flask" not in out


def test_the_receiver_distribution_is_the_servers_release_with_only_pyjwt() -> None:
    project = tomllib.loads((RECEIVER / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "docuhooks-receiver"
    assert project["version"] == docuhooks.__version__
    assert [d.split(">")[0] for d in project["dependencies"]] == ["PyJWT"]


def test_the_receiver_distribution_installs_alone_and_verifies_real_calls(
    tmp_path: Path,
) -> None:
    # A copy, so the build leaves nothing in the checkout; receiver/ holds all it needs.
    source = tmp_path / "receiver"
    shutil.copytree(RECEIVER, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    hmac, hmac_get = target(AuthMethod.HMAC), target(AuthMethod.HMAC, Verb.GET)
    whsec, access = target(AuthMethod.STANDARD_WEBHOOKS), target(AuthMethod.ACCESS_TOKEN)
    assert hmac.secret and hmac_get.secret and whsec.secret and access.access_token
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DOCUHOOKS_HMAC_SECRETS": f"{hmac.secret.value},{hmac_get.secret.value}",
        "DOCUHOOKS_WHSEC_SECRETS": whsec.secret.value,
        "DOCUHOOKS_ACCESS_TOKENS": access.access_token,
        "DOCUHOOKS_WEBHOOK_IDS": WEBHOOK_ID,
    }
    script = Path(__file__).with_name("standalone_receiver.py")
    # -I: the venv's own site-packages only, never this checkout or PYTHONPATH.
    receiver = LiveReceiver([str(python), "-I", str(script)], environment, tmp_path)
    try:
        installed = set(receiver.started["distributions"]) - {"pip", "setuptools", "wheel"}
        assert installed == {"docuhooks-receiver", "pyjwt"}

        for webhook, method in [
            (hmac, "HMAC"),
            (hmac_get, "HMAC"),
            (whsec, "StandardWebhooks"),
            (access, "AccessToken"),
        ]:
            reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, webhook)
            assert reply.status == 204, reply.body
            assert reply.log["verified"] is True
            assert (reply.log["authMethod"], reply.log["eventType"]) == (
                method,
                "InterviewLoadEvent",
            )

        stranger = target(AuthMethod.HMAC)  # another secret, the receiver's webhook id
        reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, stranger)
        assert reply.status == 401
        assert reply.log["code"] == "BadSignature"
        # The access token, which travels in clear, used as an HMAC key: refused.
        forged = dataclasses.replace(
            hmac, secret=SigningSecret(kid="forged", value=access.access_token)
        )
        reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, forged)
        assert reply.status == 401
        assert reply.log["code"] == "BadSignature"
    finally:
        receiver.close()
