"""The one error tree. Every failure Headwater reports is a HeadwaterError.

Each class carries a stable PostgREST-style code and an HTTP status; the API layer
(``headwater.api.responses``) is the only place that turns them into HTTP. Three branches:
``RequestError`` (4xx: the request is wrong), ``ServiceError`` (5xx: we or a dependency
failed) and ``ConfigError`` (the operator's settings are wrong: found at start, before
anything is served, and reported by the CLI as one line with exit status 2).
"""

from __future__ import annotations

from typing import Any, ClassVar


class HeadwaterError(Exception):
    """Root of every error Headwater raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "HW000"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        hint: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.hint = hint
        # Instances may refine the class defaults (e.g. 22P02 vs 22007), never the tree.
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details,
                "hint": self.hint}


# --- 4xx: the request is wrong --------------------------------------------------------------

class RequestError(HeadwaterError):
    """The client sent something we cannot act on."""

    status = 400
    code = "PGRST100"


class ParseError(RequestError):
    """The query string or a header does not follow the grammar."""

    code = "PGRST100"


class InvalidRange(RequestError):
    status = 416
    code = "PGRST103"


class InvalidBody(RequestError):
    code = "PGRST102"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "PGRST107"


class NotAcceptable(RequestError):
    status = 406
    code = "PGRST107"


class SchemaNotExposed(RequestError):
    """``Accept-Profile`` / ``Content-Profile`` names a schema that is not served."""

    status = 406
    code = "PGRST106"


class SingularityError(RequestError):
    """``application/vnd.pgrst.object+json`` asked for, but not exactly one row."""

    status = 406
    code = "PGRST116"


class UnknownTable(RequestError):
    status = 404
    code = "PGRST205"


class UnknownColumn(RequestError):
    code = "42703"


class UnknownRelationship(RequestError):
    code = "PGRST200"


class AmbiguousRelationship(RequestError):
    status = 300
    code = "PGRST201"


class UnsupportedFilter(RequestError):
    """An operator the column's type or the database cannot answer (``<<`` on an integer,
    a range operator on SQLite, full text on a SQLite table without an FTS5 index)."""

    code = "42883"


class InvalidValue(RequestError):
    """A literal that is not valid for its column's type."""

    code = "22P02"


class ConstraintViolation(RequestError):
    """The database refused the data (not-null, check, length, range): 400 as PostgREST."""

    code = "23514"
    #: Names a failed CHECK's expression mentions (never sent: see ``service.writes``).
    columns: tuple[str, ...] = ()


class Conflict(RequestError):
    """A unique or foreign-key constraint refused the write: 409 as PostgREST."""

    status = 409
    code = "23505"


class InvalidWrite(RequestError):
    """A write the API refuses before any SQL (e.g. UPDATE with no filter)."""

    code = "21000"


class Rejected(RequestError):
    """Raised by a user's hook to refuse a request with a status of its choosing."""

    status = 400
    code = "HW422"

    def __init__(self, message: str, *, status: int = 400, details: Any = None,
                 hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, details=details, hint=hint, code=code, status=status)


class Raised(RequestError):
    """An error a database function or trigger raised on purpose (``RAISE EXCEPTION``, a
    custom SQLSTATE, PostgREST's ``PGRST``): its code, message, details and hint are the
    function's, its status PostgREST's for that code, ``headers`` the ones it asked for."""

    code = "P0001"

    def __init__(self, message: str, *, status: int = 400, code: str = "P0001",
                 details: Any = None, hint: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, details=details, hint=hint, code=code, status=status)
        self.headers = headers or {}


class InvalidField(InvalidValue):
    """One value of a write's body that does not fit its column. The write validator
    (``headwater.service.validation``) collects these per field into one ``InvalidBody``;
    it never escapes it. ``code`` is PostgreSQL's for the problem (22001 too long, ...)."""

    def __init__(self, message: str, code: str = "22P02") -> None:
        super().__init__(message, code=code)


class MethodNotAllowed(RequestError):
    status = 405
    code = "PGRST117"


class AmbiguousFunction(RequestError):
    """Overloads of a database function that the arguments sent cannot tell apart."""

    status = 300
    code = "PGRST203"


class ReadOnly(MethodNotAllowed):
    """A write to a database served read-only (``--read-only``, an unwritable file, or a
    PostgreSQL read-only transaction): PostgREST's answer to SQLSTATE 25006."""

    code = "25006"


class NotFound(RequestError):
    status = 404
    code = "PGRST125"


# --- security: authentication, policies, rate limits (headwater.api.auth, service.policy) ----

class Unauthorized(RequestError):
    """No acceptable credentials: a bad, expired or tampered token, an unknown API key, or
    anonymous access where no anonymous role exists. ``challenge`` is the
    ``WWW-Authenticate`` value, as PostgREST sends it."""

    status = 401
    code = "PGRST301"

    def __init__(self, message: str, *, challenge: str = "Bearer", code: str | None = None,
                 details: Any = None, hint: str | None = None) -> None:
        super().__init__(message, code=code, details=details, hint=hint)
        self.challenge = challenge


class Forbidden(RequestError):
    """No policy lets the caller's role do this (PostgreSQL's 42501). 401 for anonymous
    callers, 403 otherwise, as PostgREST answers."""

    status = 403
    code = "42501"


class RateLimited(RequestError):
    """Too many requests; ``retry_after`` seconds until the window resets."""

    status = 429
    code = "HW429"

    def __init__(self, message: str, *, retry_after: int, details: Any = None,
                 hint: str | None = None) -> None:
        super().__init__(message, details=details, hint=hint)
        self.retry_after = retry_after


class EncryptedColumn(RequestError):
    """Filtering or ordering on an encrypted column (its stored values are ciphertext)."""

    code = "HW400"


class RequestTimeout(RequestError):
    """The client did not send its request's head within ``header_timeout``, or its body
    within ``body_timeout`` at ``body_min_rate``: answered and the connection closed."""

    status = 408
    code = "HW408"


class HeadersTooLarge(RequestError):
    """A request line and headers longer than ``max_header_bytes``."""

    status = 431
    code = "HW431"


class LimitExceeded(RequestError):
    """A read over one of the operator's resource limits (``max_embed_depth``,
    ``max_response_bytes``): PostgREST has no such limits, so the code is Headwater's. 400,
    not 413, because the request itself may be small: it asks for too much. The message
    names the limit and the hint the setting."""

    code = "HW413"


class DemoTargetBusy(HeadwaterError):
    """The SQLite file the demo would replace is open elsewhere (a running server, a shell)."""

    status = 409
    code = "HW409"


# --- 5xx: we or a dependency failed -----------------------------------------------------------

class ServiceError(HeadwaterError):
    status = 500
    code = "HW500"


class DatabaseUnavailable(ServiceError):
    """The database cannot answer now; ``sent`` says whether a statement may have reached it
    (a write is retried only when it cannot have), ``retry_after`` feeds the header."""

    status = 503
    code = "PGRST001"

    def __init__(self, message: str, *, details: Any = None, hint: str | None = None,
                 sent: bool = True, retryable: bool = True, retry_after: float = 1.0) -> None:
        super().__init__(message, details=details, hint=hint)
        self.sent = sent
        self.retryable = retryable
        self.retry_after = retry_after


class TransactionConflict(ServiceError):
    """A serialization failure or deadlock that outlived its retries."""

    status = 409
    code = "40001"


class DatabaseError(ServiceError):
    """An unexpected database error; its text is logged, never sent."""

    status = 500
    code = "HW501"


class Timeout(ServiceError):
    status = 504
    code = "57014"


class BreakerOpen(ServiceError):
    """A dependency's circuit breaker is open: answered at once, without trying it."""

    status = 503
    code = "HW503"


class Overloaded(ServiceError):
    """This worker already has ``max_connections`` connections open."""

    status = 503
    code = "HW503"


class RedisUnavailable(ServiceError):
    """Redis failed, timed out, or its breaker is open; the cache is bypassed meanwhile."""

    status = 503
    code = "HW503"


class RedisNotAsked(RedisUnavailable):
    """Redis was not called at all: its breaker is open, or no connection was free. Unlike a
    call that failed, this says nothing new about Redis."""


class BrokerUnavailable(ServiceError):
    """RabbitMQ cannot be reached or did not confirm; events wait in the outbox meanwhile.

    ``confirmed`` counts the leading messages of a batch the broker did confirm."""

    status = 503
    code = "HW503"

    def __init__(self, message: str, *, confirmed: int = 0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.confirmed = confirmed


class DecryptionFailed(ServiceError):
    """A stored value could not be decrypted (unknown key id or tampered ciphertext)."""

    status = 500
    code = "HW510"


# --- configuration: the operator's settings are wrong -----------------------------------------
# Raised while settings are read (CLI, app factory), never while a request is served. Also
# ValueErrors, as they were before they joined the tree, so callers catching that still do.

class ConfigError(HeadwaterError, ValueError):
    """A setting is invalid; the message is one line naming the setting and what is allowed."""

    status = 500
    code = "HWC00"


class DemoTargetExists(ConfigError):
    """``headwater demo`` was pointed at an existing file or tables (``--force`` replaces)."""


class InvalidSetting(ConfigError):
    """A ``HEADWATER_*`` environment variable or a flag that does not parse as its setting's
    type (``headwater.config``)."""

    code = "HWC01"


class SettingsError(ConfigError):
    """The settings file (``--config``) is missing, unreadable or invalid, or names a table,
    column or filter that does not work (``headwater.settings_file``, ``service.policy``)."""

    code = "HWC02"


class MissingExtra(ConfigError):
    """A setting needs a client library that is an optional extra of the package (asyncpg
    for PostgreSQL, redis, aio-pika for RabbitMQ) and it is not installed."""

    code = "HWC03"
