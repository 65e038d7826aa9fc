"""Caller identity: bearer JWTs verified with PyJWT, and the tokens the suite mints for itself.

A caller is who a verified token says (`sub`) with what it may do (`scope`); nothing a request
says about its sender is believed. HS256 tokens are checked against every configured secret
(the first one signs, so secrets rotate by prepending a new one and dropping the old one once
its tokens have expired); RS256 and ES256 tokens against the keys of a JWKS file from the
identity provider. Any other algorithm, `alg: none` included, is refused.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from fanline.common.errors import Unauthenticated

if TYPE_CHECKING:
    from fanline.common.config import Settings

INTERNAL = "fanline.internal"  # the suite's own services calling each other
ADMIN = "fanline.admin"  # operators: fan-out statistics, anyone's delivery records

HMAC_ALGORITHMS = ("HS256",)
KEY_ALGORITHMS = ("RS256", "ES256")
HMAC_SECRET_MIN_CHARS = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
LEEWAY_S = 30  # clock skew tolerated between the token's issuer and us
VERIFIED_CACHE_SIZE = 10_000  # tokens remembered as verified (a few MB at most)
INTERNAL_TOKEN_TTL_S = 300
INTERNAL_TOKEN_REFRESH_S = 60  # a cached internal token is replaced this long before it expires


@dataclass(frozen=True)
class Caller:
    sub: str  # the acting user id (or the service, for internal tokens)
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def current() -> Caller | None:
    """The verified caller of the RPC being served; None when FANLINE_AUTH=none."""
    return _caller.get()


def viewer() -> str:
    """Who page tokens are bound to: the caller's sub, or "" with FANLINE_AUTH=none."""
    caller = _caller.get()
    return caller.sub if caller is not None else ""


def acting_as(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _caller.set(caller)


def load_jwks(path: str) -> jwt.PyJWKSet:
    """The identity provider's public keys; ValueError with a reason if unusable."""
    try:
        return jwt.PyJWKSet.from_json(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a usable JWKS: {exc}") from None


class Keys:
    """Verifies bearer tokens and mints HS256 ones with the first secret."""

    def __init__(self, secrets: Sequence[str], jwks: jwt.PyJWKSet | None = None,
                 issuer: str = "", audience: str = "") -> None:
        self._secrets = list(secrets)
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()  # token -> exp

    def verify(self, token: str) -> Caller:
        """The caller a token names, if it verifies. A token that verified before is only
        checked for expiry: the token text includes its signature, so the same text cannot
        say anything else, and the signature check is most of a call's auth cost."""
        known = self._verified.get(token)
        if known is not None:
            caller, expires = known
            if time.time() <= expires + LEEWAY_S:
                self._verified.move_to_end(token)
                return caller
            del self._verified[token]
            raise Unauthenticated("the token has expired")
        caller, expires = self._verify(token)
        self._verified[token] = (caller, expires)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)  # the least recently used
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm in HMAC_ALGORITHMS and self._secrets:
            keys: list[Any] = self._secrets
        elif algorithm in KEY_ALGORITHMS and self._jwks is not None:
            keys = self._public_keys(header.get("kid"), str(algorithm))
        else:
            raise Unauthenticated(f"tokens signed with {algorithm!s:.16} are not accepted")
        claims = self._decode(token, keys, str(algorithm))
        subject, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("the token's sub claim must name the caller")
        if isinstance(scope, str):
            scopes = frozenset(scope.split())
        elif isinstance(scope, list) and all(isinstance(s, str) for s in scope):
            scopes = frozenset(scope)
        else:
            raise Unauthenticated("the token's scope claim must be a space-separated string")
        return Caller(subject, scopes), float(claims["exp"])

    def _public_keys(self, kid: object, algorithm: str) -> list[Any]:
        assert self._jwks is not None
        family = "RSA" if algorithm.startswith("RS") else "EC"
        candidates = [k for k in self._jwks.keys
                      if k.key_type == family and (kid is None or k.key_id == kid)]
        if not candidates:
            raise Unauthenticated("no configured key matches the token")
        return [k.key for k in candidates]

    def _decode(self, token: str, keys: Iterable[Any], algorithm: str) -> dict[str, Any]:
        required = ["exp", "sub", *(["iss"] if self._issuer else []),
                    *(["aud"] if self._audience else [])]
        for key in keys:
            try:
                return dict(jwt.decode(
                    token, key, algorithms=[algorithm], leeway=LEEWAY_S,
                    issuer=self._issuer or None, audience=self._audience or None,
                    options={"require": required, "verify_aud": bool(self._audience)}))
            except jwt.InvalidSignatureError:
                continue  # maybe the next secret (rotation)
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthenticated(f"the token has no {exc.claim} claim") from None
            except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
                raise Unauthenticated("the token was issued for someone else") from None
            except jwt.InvalidTokenError:
                raise Unauthenticated("the token is malformed") from None
        raise Unauthenticated("the token's signature does not verify")

    def mint(self, sub: str, scopes: Iterable[str] = (), ttl_s: float = 3600) -> str:
        if not self._secrets:
            raise ValueError("minting needs FANLINE_JWT_SECRETS")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_s)}
        if scope := " ".join(scopes):
            claims["scope"] = scope
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secrets[0], algorithm="HS256")


class InternalToken:
    """The `fanline.internal` token one service presents to another, re-minted before expiry."""

    def __init__(self, keys: Keys, service: str) -> None:
        self._keys = keys
        self._sub = f"fanline:{service}"
        self._token = ""
        self._renew_at = 0.0

    def header(self) -> tuple[str, str]:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self._keys.mint(self._sub, [INTERNAL], INTERNAL_TOKEN_TTL_S)
            self._renew_at = now + INTERNAL_TOKEN_TTL_S - INTERNAL_TOKEN_REFRESH_S
        return ("authorization", f"Bearer {self._token}")


def keys_for(settings: Settings) -> Keys | None:
    """The verifying and signing keys, or None when callers are trusted (FANLINE_AUTH=none)."""
    if settings.auth != "jwt":
        return None
    return Keys(settings.jwt_secrets, load_jwks(settings.jwt_jwks) if settings.jwt_jwks else None,
                settings.jwt_issuer, settings.jwt_audience)


def internal_token(settings: Settings, service: str) -> InternalToken | None:
    """What `service` presents when it calls another Fanline service (None without auth)."""
    keys = keys_for(settings)
    return InternalToken(keys, service) if keys is not None else None
