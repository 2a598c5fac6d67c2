"""API key material: generated, shown once, kept only as an HMAC.

A key reads `tk_<prefix>_<secret>`: the prefix (8 random characters) finds its row, the
secret (32 random bytes) is what proves it. Random keys of that entropy need no slow
password hash (bcrypt would cost ~250 ms a request): HMAC-SHA-256 with API_KEY_PEPPER, so a
copy of the table alone cannot even test a guess.
"""

import hashlib
import hmac
import secrets
import string

PREFIX = "tk_"
_ALPHABET = string.ascii_lowercase + string.digits


def generate() -> tuple[str, str]:
    """A new key and its prefix."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    if not key.startswith(PREFIX) or len(key) > 200:
        return None
    prefix, sep, secret = key[len(PREFIX) :].partition("_")
    if not sep or len(prefix) != 8 or not secret:
        return None
    return prefix


def digest(key: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).digest()


def matches(key: str, stored: bytes, pepper: str) -> bool:
    return hmac.compare_digest(digest(key, pepper), stored)
