"""Authentication: credentials in a request's headers → a ``Principal`` (role and claims).

- ``Authorization: Bearer <JWT>``: HS256/384/512 with ``auth.jwt_secret``, RS*/ES*/PS*/EdDSA
  with a JWKS file (PyJWT). Each algorithm family is verified only with its own kind of key,
  so an HS256 token "signed" with the public RSA key (HS/RS confusion) fails, as does
  ``alg: none``. ``exp``/``nbf`` are checked with a small clock skew, ``aud``/``iss`` when
  configured. The role comes from ``auth.role_claim`` (default ``role``, as PostgREST).
- API keys (``hw_…``) in the ``apikey`` header (as Supabase clients send it) or as a bearer
  token, looked up by ``headwater.service.api_keys``.
- No credentials: the anonymous role, if one is configured, else 401.

A verified token or key is kept in a small LRU keyed by its exact text (a token until its
``exp``, a key for ``api_key_cache_seconds``), so a cache hit costs a dict lookup, not a
signature check or a query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from headwater.cache.memory import MemoryLRU
from headwater.errors import HeadwaterError, Unauthorized
from headwater.model.principal import Principal
from headwater.service.api_keys import KeyStore, looks_like_key
from headwater.service.policy import claim
from headwater.settings_file import AuthSettings

_HMAC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                         "ES384", "ES512", "EdDSA"})


def _challenge(description: str) -> str:
    return f'Bearer error="invalid_token", error_description="{description}"'


def invalid(message: str, *, code: str = "PGRST301") -> Unauthorized:
    return Unauthorized(message, challenge=_challenge(message), code=code)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is from, once authenticated."""

    principal: Principal
    #: No credentials were sent (the anonymous role).
    anonymous: bool
    #: A stable id for per-principal rate limits (None: use the client address).
    subject: str | None = None
    #: The API key's id, when one was used.
    key_id: str | None = None


class Authenticator:
    def __init__(self, settings: AuthSettings, keys: KeyStore | None, *,
                 cache_size: int = 4096) -> None:
        self.settings = settings
        self.keys = keys if settings.api_keys else None
        # Bounded in entries; each kept until its own wall-clock deadline.
        self._cache: MemoryLRU[Identity] = MemoryLRU(cache_size, lambda _: 1, clock=time.time)
        self._jwks: dict[str | None, Jwk] = {}
        if settings.jwks_file:
            self._jwks = load_jwks(settings.jwks_file)
        self._anonymous = (Identity(Principal(settings.anonymous_role, {}), True)
                           if settings.anonymous_role else None)

    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        """``headers``: lower-case names (Starlette's ``Headers``)."""
        token = None
        auth = headers.get("authorization")
        if auth is not None and auth.strip():
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("Authorization header must be 'Bearer <token>'",
                                   challenge="Bearer", code="PGRST301")
            token = value.strip()
        else:
            apikey = headers.get("apikey")
            if apikey is not None and apikey.strip():
                token = apikey.strip()
        if token is None:
            if self._anonymous is None:
                raise Unauthorized("Anonymous access is disabled: send a bearer token or an "
                                   "API key", challenge="Bearer", code="PGRST302")
            return self._anonymous
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        now = time.time()
        if looks_like_key(token):
            identity = await self._api_key(token)
            self._keep(token, identity, now + self.settings.api_key_cache_seconds)
            return identity
        identity, until = self._jwt(token, now)
        self._keep(token, identity, until)
        return identity

    def _keep(self, token: str, identity: Identity, until: float) -> None:
        """Cache a verified credential until ``until`` (wall clock); one already past it is
        not kept."""
        ttl = until - time.time()
        if ttl > 0:
            self._cache.set(token, identity, ttl)

    async def _api_key(self, text: str) -> Identity:
        if self.keys is None:
            raise invalid("API keys are not accepted here")
        found = await self.keys.verify(text)
        if found is None:
            raise invalid("Invalid or revoked API key")
        claims = {"role": found.role, "sub": f"key:{found.id}", "key_id": found.id,
                  "key_name": found.name}
        return Identity(Principal(found.role, claims), False, f"key:{found.id}", found.id)

    def _jwt(self, token: str, now: float) -> tuple[Identity, float]:
        s = self.settings
        if len(token) > 16384:
            raise invalid("JWT too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid("Invalid JWT: it could not be decoded") from None
        alg = header.get("alg")
        key: Any
        if alg in _HMAC and s.jwt_secret:
            key = s.jwt_secret
        elif alg in _ASYMMETRIC and self._jwks:
            kid = header.get("kid")
            jwk = self._jwks.get(kid if isinstance(kid, str) else None)
            if jwk is None and kid is None and len(self._jwks) == 1:
                jwk = next(iter(self._jwks.values()))
            if jwk is None:
                raise invalid("JWT signed with an unknown key (kid)")
            if _family(jwk.algorithm_name) != _family(alg) or (
                    jwk.declared and jwk.algorithm_name != alg):
                raise invalid("JWT algorithm does not match its key")
            key = jwk.jwk.key
        else:
            raise invalid(f"JWT algorithm {str(alg)[:20]!r} is not accepted")
        required = ["exp"] if s.require_exp else []
        try:
            payload: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=s.audience or None,
                issuer=s.issuer or None, leeway=s.clock_skew_seconds,
                options={"require": required, "verify_aud": bool(s.audience),
                         "verify_iss": bool(s.issuer)})
        except jwt.ExpiredSignatureError:
            raise invalid("JWT expired", code="PGRST303") from None
        except jwt.ImmatureSignatureError:
            raise invalid("JWT not yet valid", code="PGRST303") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError,
                jwt.MissingRequiredClaimError) as exc:
            raise invalid(f"JWT claims are not acceptable: {exc}", code="PGRST303") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise invalid("JWT signature is invalid") from None
        if not isinstance(payload, dict):
            raise invalid("JWT payload is not an object")
        role = claim(payload, s.role_claim)
        if role is None:
            if not s.anonymous_role:
                raise invalid("JWT has no role claim and there is no anonymous role",
                              code="PGRST303")
            role = s.anonymous_role
        if not isinstance(role, str) or not role or len(role) > 128:
            raise invalid("JWT role claim is not a role name", code="PGRST303")
        exp = payload.get("exp")
        until = now + 300.0
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            until = min(until, float(exp) + s.clock_skew_seconds)
        sub = payload.get("sub")
        subject = f"sub:{role}:{sub}" if isinstance(sub, (str, int)) else None
        anonymous = role == s.anonymous_role and subject is None
        return Identity(Principal(role, payload), anonymous, subject), until


@dataclass(frozen=True, slots=True)
class Jwk:
    jwk: jwt.PyJWK
    algorithm_name: str
    #: The key names its algorithm ("alg"); otherwise only its family is known.
    declared: bool


def _family(alg: str) -> str:
    """RS and PS share RSA keys; ES needs EC keys; EdDSA OKP keys; HS a shared secret."""
    if alg.startswith(("RS", "PS")):
        return "RSA"
    return alg[:2]


def load_jwks(path: str) -> dict[str | None, Jwk]:
    """A JWKS file (``{"keys": [...]}``) or a single JWK → public keys by ``kid``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        keys = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
        out: dict[str | None, Jwk] = {}
        for k in keys:
            if isinstance(k, dict) and "d" in k:
                raise ValueError("a JWKS for verifying holds public keys only (no \"d\")")
            jwk = jwt.PyJWK.from_dict(k)
            if jwk.algorithm_name not in _ASYMMETRIC:
                raise ValueError(f"key {jwk.key_id!r} is not a public key "
                                 "(shared secrets go in auth.jwt_secret)")
            out[jwk.key_id] = Jwk(jwk, jwk.algorithm_name, "alg" in k)
    except (OSError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        raise HeadwaterError(f"cannot load the JWKS file {path}: {exc}") from None
    if not out:
        raise HeadwaterError(f"the JWKS file {path} has no keys")
    return out
