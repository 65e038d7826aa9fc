"""Opaque, signed page tokens.

A token is base64url(JSON payload + 16-byte HMAC). The signature lets us tell tokens we issued
from anything else (INVALID_ARGUMENT), and the payload binds the token to the request it
continues (e.g. the user whose timeline it pages), so a token cannot be replayed elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from services.common.errors import InvalidArgument

_MAC_BYTES = 16


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def issue(self, scope: str, **state: Any) -> str:
        payload = json.dumps({"s": scope, **state}, separators=(",", ":"), sort_keys=True).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def parse(self, token: str, scope: str, field: str = "page_token") -> dict[str, Any]:
        """The state of a token we issued for `scope`; InvalidArgument for anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument(field, "is not a page token issued by this service") from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise InvalidArgument(field, "is not a page token issued by this service")
        state = json.loads(payload)
        if state.pop("s", None) != scope:
            raise InvalidArgument(field, "was issued for a different request")
        return state
