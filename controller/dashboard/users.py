"""The dashboard's users: names and scrypt hashes in a JSON file, and signed, expiring sessions.

A person signs in to the dashboard, not to the broker: the browser never sees broker
credentials (the server alone holds them), and each command the person sends carries their
name into the rig's journal (`by`). Passwords are hashed with scrypt (the standard library's
`hashlib.scrypt`, RFC 7914 parameters n=2**14, r=8, p=1), each with its own salt; the file
holds no password. `alsctl dashboard add-user NAME` writes it (asking for the password
twice, or reading it from standard input when that is not a terminal).

A session is a cookie `name|expiry|token|mac`, HMAC-SHA256 under a key drawn when the
server starts: a restart signs everyone out, which a supervisor's screen survives by signing
in again. `token` doubles as the CSRF token a command must echo in a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from controller.errors import AlsError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
#: A session lasts this long from sign-in (a shift), then the person signs in again
SESSION_S = 8 * 3600


class UsersError(AlsError):
    exit_code = 2


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Users:
    """The users file: `{name: {"salt": b64, "hash": b64}}`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except ValueError as exc:
            raise UsersError(f"{self.path}: not a users file ({exc})") from None
        if not isinstance(data, dict):
            raise UsersError(f"{self.path}: not a users file (expected an object)")
        return data

    def names(self) -> list[str]:
        return sorted(self._read())

    def add(self, name: str, password: str) -> None:
        """Add a user, or set a new password for one."""
        if not NAME.match(name):
            raise UsersError(f"user name {name!r}: 1 to 64 letters, digits, '_', '.', '@' or '-'")
        if len(password) < MIN_PASSWORD:
            raise UsersError(f"password: at least {MIN_PASSWORD} characters")
        users = self._read()
        salt = secrets.token_bytes(16)
        users[name] = {"salt": _b64(salt), "hash": _b64(_hash(password, salt))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(users, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def check(self, name: str, password: str) -> bool:
        entry = self._read().get(name)
        if entry is None:
            _hash(password, b"0" * 16)  # as long as a real check: no user-name oracle
            return False
        salt = base64.b64decode(entry["salt"])
        return hmac.compare_digest(_hash(password, salt), base64.b64decode(entry["hash"]))


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: float
    #: echoed by the page in the `X-CSRF-Token` header of every command
    token: str


class Sessions:
    """Signed session cookies under a key of this server's lifetime."""

    def __init__(self, lifetime_s: float = SESSION_S, key: bytes | None = None) -> None:
        self.lifetime_s = lifetime_s
        self._key = key or secrets.token_bytes(32)

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, now: float | None = None) -> tuple[str, Session]:
        now = time.time() if now is None else now
        session = Session(user, now + self.lifetime_s, secrets.token_urlsafe(16))
        body = f"{user}|{session.expires:.0f}|{session.token}"
        return f"{body}|{self._mac(body)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None (missing, forged, or expired)."""
        if not cookie or cookie.count("|") != 3:
            return None
        body, mac = cookie.rsplit("|", 1)
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        user, expires, token = body.split("|")
        now = time.time() if now is None else now
        if not expires.isdigit() or float(expires) <= now:
            return None
        return Session(user, float(expires), token)
