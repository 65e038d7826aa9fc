"""Opaque, signed page tokens.

A token is base64url(JSON payload + 16-byte HMAC). The signature lets us tell tokens we issued
from anything else, and the payload binds the token to its viewer (the verified caller) and to
the request it continues (e.g. the user whose timeline it pages), so a token issued to alice is
refused for bob and cannot be replayed on another query. Every failure is INVALID_ARGUMENT
naming the field: the caller cannot tell a forged token from a corrupted one.

Keys rotate like the JWT secrets: the first signs, all verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from fanline.common.errors import InvalidArgument

_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 1024  # ours are far shorter; a longer one is refused before any work


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


class PageTokens:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("page tokens need at least one secret")
        self._keys = [s.encode() for s in secrets]

    def issue(self, scope: str, viewer: str, **state: Any) -> str:
        payload = json.dumps({"s": scope, "v": viewer, **state}, separators=(",", ":"),
                             sort_keys=True).encode()
        return base64.urlsafe_b64encode(payload + _mac(self._keys[0], payload)).decode().rstrip("=")

    def parse(self, token: str, scope: str, viewer: str,
              field: str = "page_token") -> dict[str, Any]:
        """The state of a token we issued to `viewer` for `scope`; InvalidArgument otherwise."""
        foreign = InvalidArgument(field, "is not a page token issued for this request")
        if len(token) > _MAX_TOKEN_CHARS:
            raise foreign
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise foreign from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not any(
                hmac.compare_digest(mac, _mac(key, payload)) for key in self._keys):
            raise foreign
        try:
            state = json.loads(payload)
        except ValueError:
            raise foreign from None
        if not isinstance(state, dict) or state.pop("s", None) != scope \
                or state.pop("v", None) != viewer:
            raise foreign
        return state

    def parse_int(self, token: str, scope: str, viewer: str, key: str,
                  field: str = "page_token") -> int:
        """A token whose state is one positive integer under `key`."""
        value = self.parse(token, scope, viewer, field).get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidArgument(field, "is not a page token issued for this request")
        return value

    def parse_str(self, token: str, scope: str, viewer: str, key: str,
                  field: str = "page_token") -> str:
        value = self.parse(token, scope, viewer, field).get(key)
        if not isinstance(value, str) or not value:
            raise InvalidArgument(field, "is not a page token issued for this request")
        return value
