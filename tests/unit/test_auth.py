"""Bearer token verification: what is accepted, and every way a token is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fanline.common.auth import INTERNAL, Caller, InternalToken, Keys, load_jwks
from fanline.common.errors import Unauthenticated

SECRET = "s" * 32
OLD_SECRET = "o" * 32


def standard(claims: dict, key: object = SECRET, algorithm: str = "HS256", **headers: str) -> str:
    """A token made with PyJWT itself, as any other service or identity provider would."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers or None)  # type: ignore[arg-type]


def claims(**extra: object) -> dict:
    return {"sub": "alice", "exp": int(time.time()) + 3600, **extra}


def refused(keys: Keys, token: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        keys.verify(token)
    return err.value.message


def test_tokens_from_any_jwt_library_with_a_configured_secret_are_accepted() -> None:
    keys = Keys([SECRET, OLD_SECRET])
    assert keys.verify(standard(claims(scope="fanline.admin x"))) == \
        Caller("alice", frozenset({"fanline.admin", "x"}))
    assert keys.verify(standard(claims(), OLD_SECRET)).sub == "alice"  # rotation: all verify
    minted = keys.mint("bob", [INTERNAL], 60)
    assert jwt.decode(minted, SECRET, algorithms=["HS256"])["sub"] == "bob"  # the first signs
    assert keys.verify(minted) == Caller("bob", frozenset({INTERNAL}))


@pytest.mark.parametrize("token, reason", [
    ("", "not a JWT"),
    ("not-a-token", "not a JWT"),
    ("a.b.c", "not a JWT"),
    (standard(claims(), "w" * 32), "signature"),
    (standard({"sub": "alice"}), "exp"),
    (standard({"exp": int(time.time()) + 60}), "sub"),
    (standard(claims(sub="")), "sub"),
    (standard(claims(sub=7)), "malformed"),
    (standard(claims(exp=int(time.time()) - 120)), "expired"),
    (standard(claims(scope=7)), "scope"),
    (standard(claims(), algorithm="HS512", key="k" * 64), "HS512"),
    (jwt.encode(claims(), None, algorithm="none"), "none"),  # type: ignore[arg-type]
])
def test_bad_tokens_are_unauthenticated(token: str, reason: str) -> None:
    assert reason in refused(Keys([SECRET]), token)


def test_a_forged_unsigned_token_is_refused() -> None:
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(claims(scope=INTERNAL)).encode())
    refused(Keys([SECRET]), f"{header.decode()}.{body.decode()}.")


def test_issuer_and_audience_when_configured() -> None:
    keys = Keys([SECRET], issuer="https://id.example", audience="fanline")
    assert keys.verify(standard(claims(iss="https://id.example", aud="fanline"))).sub == "alice"
    assert "someone else" in refused(keys, standard(claims(iss="https://evil", aud="fanline")))
    assert "someone else" in refused(keys, standard(claims(iss="https://id.example", aud="x")))
    assert "iss" in refused(keys, standard(claims(aud="fanline")))
    assert keys.verify(keys.mint("carol")).sub == "carol"  # minted tokens carry both


@pytest.fixture
def provider(tmp_path: Path) -> tuple[Path, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]:
    """An identity provider's key pair per family, and its public JWKS file."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, public, algorithm in (("r1", rsa_key.public_key(), jwt.algorithms.RSAAlgorithm),
                                   ("e1", ec_key.public_key(), jwt.algorithms.ECAlgorithm)):
        jwk = json.loads(algorithm.to_jwk(public))  # type: ignore[attr-defined]
        keys.append({**jwk, "kid": kid, "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return path, rsa_key, ec_key


def test_identity_provider_tokens_verify_against_the_jwks(provider) -> None:
    path, rsa_key, ec_key = provider
    keys = Keys([SECRET], load_jwks(str(path)))
    assert keys.verify(standard(claims(), rsa_key, "RS256", kid="r1")).sub == "alice"
    assert keys.verify(standard(claims(sub="bob"), ec_key, "ES256", kid="e1")).sub == "bob"
    assert keys.verify(standard(claims(), rsa_key, "RS256")).sub == "alice"  # no kid: try all
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in refused(keys, standard(claims(), other, "RS256", kid="r1"))
    assert "no configured key" in refused(keys, standard(claims(), rsa_key, "RS256", kid="zz"))
    # Without a JWKS, key-signed tokens are not accepted at all.
    assert "RS256" in refused(Keys([SECRET]), standard(claims(), rsa_key, "RS256", kid="r1"))


def test_the_public_key_cannot_be_used_as_an_hmac_secret(provider) -> None:
    # Algorithm confusion: sign HS256 with the provider's public key, which an attacker knows.
    path, rsa_key, _ = provider
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = b".".join(jwt.utils.base64url_encode(json.dumps(part).encode()) for part in
                              ({"alg": "HS256", "typ": "JWT"}, claims(scope=INTERNAL)))
    mac = hmac.new(pem, signing_input, hashlib.sha256).digest()  # PyJWT itself refuses to
    forged = f"{signing_input.decode()}.{jwt.utils.base64url_encode(mac).decode()}"
    assert "signature" in refused(Keys([SECRET], load_jwks(str(path))), forged)
    refused(Keys([], load_jwks(str(path))), forged)


def test_an_unusable_jwks_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_jwks(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a usable JWKS"):
        load_jwks(str(tmp_path / "bad.json"))


def test_internal_tokens_are_reused_then_renewed_before_expiry(monkeypatch) -> None:
    keys = Keys([SECRET])
    internal = InternalToken(keys, "post")
    first = internal.header()
    assert internal.header() == first
    name, value = first
    assert name == "authorization" and keys.verify(value.removeprefix("Bearer ")) == \
        Caller("fanline:post", frozenset({INTERNAL}))
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 250)  # within a minute of expiry
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    assert internal.header() != first


def test_a_verified_token_is_remembered_but_still_expires(monkeypatch) -> None:
    keys = Keys([SECRET])
    token = standard(claims(exp=int(time.time()) + 60))
    first = keys.verify(token)
    assert keys.verify(token) is first  # remembered: no second signature check
    assert "signature" in refused(keys, token[:-4] + "AAAA")  # another text, checked in full
    later = time.time() + 60 + 31  # past exp and the leeway
    monkeypatch.setattr(time, "time", lambda: later)
    assert "expired" in refused(keys, token)
