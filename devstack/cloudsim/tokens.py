"""Signed access tokens (RS256) and their validation, as Entra issues them.

Claims follow the v1.0 access-token shape Graph and the other resources receive
(https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference):
``aud`` is the resource, app-only tokens carry application permissions in ``roles``.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenRejected(Exception):
    """The bearer token is missing, malformed, badly signed, expired or for another audience."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "missing" | "malformed" | "signature" | "expired" | "audience"
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who called a resource API: taken from a validated token."""

    tenant_id: str
    app_id: str
    roles: frozenset[str]
    audience: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    upn: str | None = None


class TokenIssuer:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:27]
        numbers = self._key.public_key().public_numbers()
        self.jwks: dict[str, Any] = {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            ]
        }
        self._public = self._key.public_key()

    def issue(
        self,
        *,
        tenant_id: str,
        app_id: str,
        audience: str,
        roles: list[str],
        lifetime_s: int,
        scopes: list[str] | None = None,
        upn: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            # v1.0 tokens (what Graph/Defender/PC/Key Vault get) name sts.windows.net as issuer.
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "appid": app_id,
            "appidacr": "1",
            "idtyp": "user" if upn else "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}")),
            "tid": tenant_id,
            "ver": "1.0",
            "uti": uuid.uuid4().hex[:22],
        }
        if roles:
            claims["roles"] = sorted(roles)
        if scopes:
            claims["scp"] = " ".join(scopes)
        if upn:
            claims["upn"] = upn
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def validate(self, authorization: str | None, audiences: frozenset[str]) -> Principal:
        if not authorization:
            raise TokenRejected("missing", "Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("malformed", "Invalid authorization header.")
        try:
            claims = jwt.decode(
                token.strip(),
                self._public,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "tid", "aud"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("expired", "Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("signature", "Access token validation failure.") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", "IDX14100: JWT is not well formed.") from exc
        if str(claims.get("aud", "")).rstrip("/") not in audiences:
            raise TokenRejected("audience", "Access token validation failure. Invalid audience.")
        return Principal(
            tenant_id=str(claims["tid"]),
            app_id=str(claims.get("appid", "")),
            roles=frozenset(claims.get("roles", [])),
            audience=str(claims["aud"]),
            scopes=frozenset(str(claims.get("scp", "")).split()),
            upn=claims.get("upn"),
        )
