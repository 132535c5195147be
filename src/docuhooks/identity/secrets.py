"""Password hashing, API tokens, and encryption of webhook secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from docuhooks.store.private_files import PRIVATE_FILE_MODE, make_private_dir

_hasher = PasswordHasher()

TOKEN_PREFIX = "dht_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same time as a real check so a missing account is not observable.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


#: Random characters of a token kept in the clear, to show beside its name: 36 of its 256
#: random bits, too few to help guess the rest.
SHOWN_RANDOM_CHARACTERS = 6


def token_prefix(token: str) -> str:
    """What lists show of a token: `dht_` and its first random characters."""
    return token[: len(TOKEN_PREFIX) + SHOWN_RANDOM_CHARACTERS]


def hash_token(token: str) -> str:
    """API tokens are random and long, so a fast hash is enough (no dictionary to attack)."""
    return hashlib.sha256(token.encode()).hexdigest()


class SecretBox:
    """Symmetric encryption (Fernet: AES-128-CBC + HMAC-SHA256) for secrets kept at rest.

    Any key text is accepted: it is stretched to a Fernet key with SHA-256, so an operator can
    set `DOCUHOOKS_SECRET_KEY` to a long random string of their choosing.
    """

    def __init__(self, key_text: str) -> None:
        if len(key_text) < 16:
            raise ValueError("DOCUHOOKS_SECRET_KEY must be at least 16 characters")
        digest = hashlib.sha256(key_text.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        #: What the installation records of its key (`identity.installation_key`): an HMAC
        #: of a fixed text, which tells whether two processes share a key without telling
        #: the key.
        self.key_check = hmac.new(digest, b"docuhooks installation key", "sha256").hexdigest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a stored secret cannot be decrypted: DOCUHOOKS_SECRET_KEY is not the key "
                "it was encrypted with"
            ) from exc

    def can_decrypt(self, token: str) -> bool:
        try:
            self._fernet.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    @classmethod
    def for_data_dir(cls, configured: str, data_dir: Path) -> SecretBox:
        """The configured key, or the one generated into the data directory on first start."""
        if configured:
            return cls(configured)
        path = data_dir / "secret.key"
        if not path.exists():
            make_private_dir(data_dir)
            # O_EXCL: of two processes starting at once, one writes the key, the other fails
            # loudly rather than overwriting it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fd, PRIVATE_FILE_MODE)
                fh.write(secrets.token_urlsafe(48))
        return cls(path.read_text().strip())
