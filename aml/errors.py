"""One error base carrying an HTTP status; every HTTP app has one translator for it.

Errors must pickle (they cross Ray process boundaries), so constructors take only simple
arguments and ``__reduce__`` is inherited from ``Exception`` with ``args`` kept intact.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AmlError(Exception):
    """Base error: ``status_code`` for HTTP, ``quiet`` suppresses tracebacks in logs."""

    status_code: ClassVar[int] = 500
    quiet: ClassVar[bool] = False
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, details)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def _rebuild(cls: type[AmlError], message: str, details: dict[str, Any]) -> AmlError:
    return cls(message, **details)


class BadRequest(AmlError):
    status_code = 400
    quiet = True
    code = "bad_request"


class Unauthorized(AmlError):
    status_code = 401
    quiet = True
    code = "unauthorized"


class Forbidden(AmlError):
    status_code = 403
    quiet = True
    code = "forbidden"


class NotFound(AmlError):
    status_code = 404
    quiet = True
    code = "not_found"


class Conflict(AmlError):
    status_code = 409
    quiet = True
    code = "conflict"


class PayloadTooLarge(AmlError):
    status_code = 413
    quiet = True
    code = "payload_too_large"


class UnsupportedMediaType(AmlError):
    status_code = 415
    quiet = True
    code = "unsupported_media_type"


class Unprocessable(AmlError):
    status_code = 422
    quiet = True
    code = "unprocessable"


class TooManyRequests(AmlError):
    status_code = 429
    quiet = True
    code = "too_many_requests"


class ServiceUnavailable(AmlError):
    status_code = 503
    code = "service_unavailable"


class ConfigError(AmlError):
    """Invalid configuration; names the offending variable or file."""

    code = "config_error"
