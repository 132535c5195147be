"""`docuhooks_receiver.fastapi` under the server's name (see `docuhooks.receiver`)."""

from docuhooks_receiver.fastapi import verified_event as verified_event
