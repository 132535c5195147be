"""The baseline `bench/delivery.py` compares docuhooks with: webhook delivery as a Python team
would build it by hand, a Celery task with a Redis broker that signs the event and POSTs it
with requests, retrying on failure.

It is given every advantage that is cheap to give: a keep-alive `requests.Session` per worker
thread (a plain `requests.post` opens a connection per call), results ignored, and no attempt
log (docuhooks writes a row per attempt and updates the delivery; this task writes nothing).

    celery -A celery_delivery worker --pool threads --concurrency 64   (cwd: bench/)
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import jwt
import requests
from celery import Celery

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench-delivery")

app = Celery("bench_delivery", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@app.task(bind=True, max_retries=8)
def deliver(
    self: Any, url: str, event: dict[str, Any], secret: str, webhook_id: str, issuer: str
) -> None:
    now = int(time.time())
    claims = {
        **event,
        "iss": issuer,
        "aud": webhook_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    headers = {
        "User-Agent": "handmade/1.0",
        "X-Docuhooks-Event-Id": event["eventId"],
        "X-Docuhooks-Event-Type": event["eventType"],
        "X-Docuhooks-Delivery-Id": self.request.id,
        "X-Docuhooks-Attempt": str(self.request.retries + 1),
    }
    try:
        response = _session().post(url, data={"token": token}, headers=headers, timeout=15)
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=10) from exc
    if not 200 <= response.status_code < 300:
        raise self.retry(countdown=10)
