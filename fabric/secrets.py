"""Secrets at rest: AES-GCM with a key from FABRIC_SECRET_KEY or a 0600 key file.

Each value is bound to where it lives (associated data ``platform:account:field``), so a
ciphertext copied into another row or column does not decrypt. Stored form:
``v1:`` + urlsafe-base64(12-byte nonce + ciphertext + tag).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Cipher", "SecretError", "load_key"]


class SecretError(Exception):
    code = "secret_error"


def load_key(home: Path, env: dict[str, str] | None = None) -> bytes:
    """FABRIC_SECRET_KEY (base64 of 32 bytes), FABRIC_SECRET_KEY_FILE, or $home/secret.key
    (created with mode 0600 on first use)."""
    env = dict(os.environ if env is None else env)
    if env.get("FABRIC_SECRET_KEY"):
        key = base64.urlsafe_b64decode(env["FABRIC_SECRET_KEY"].encode() + b"==")
        if len(key) != 32:
            raise SecretError("FABRIC_SECRET_KEY must be 32 bytes, base64-encoded")
        return key
    path = Path(env.get("FABRIC_SECRET_KEY_FILE") or home / "secret.key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    key = base64.urlsafe_b64decode(path.read_bytes().strip())
    if len(key) != 32:
        raise SecretError(f"{path} does not hold a 32-byte key")
    return key


class Cipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, where: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), where.encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, where: str) -> str:
        if not stored.startswith("v1:"):
            raise SecretError(f"{where}: not an encrypted value")
        blob = base64.urlsafe_b64decode(stored[3:].encode())
        try:
            return self._aead.decrypt(blob[:12], blob[12:], where.encode()).decode()
        except InvalidTag:
            raise SecretError(f"{where}: cannot decrypt (wrong key or tampered value)") from None
