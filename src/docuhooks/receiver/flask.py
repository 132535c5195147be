"""`docuhooks_receiver.flask` under the server's name (see `docuhooks.receiver`)."""

from docuhooks_receiver.flask import verified as verified
