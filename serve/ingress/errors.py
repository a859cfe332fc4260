"""The ingress's one error translator: every failure becomes a JSON body with the right status.

``AmlError`` carries its own status and body. Sanic's own exceptions (unknown route, method not
allowed, body over the size limit) keep their status. Anything else is a bug: a generic 500 JSON
with the traceback logged, never the exception text (it could echo request data).
"""

from __future__ import annotations

import logging

from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from aml.errors import AmlError

log = logging.getLogger(__name__)

_SANIC_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "service_unavailable",
}


def error_response(request: Request, exc: Exception) -> HTTPResponse:
    """Translate ``exc`` raised while handling ``request`` into a JSON response."""
    if isinstance(exc, AmlError):
        if not exc.quiet:
            log.error("%s %s -> %d %s", request.method, request.path, exc.status_code, exc.message)
        return json(exc.to_dict(), status=exc.status_code)
    if isinstance(exc, SanicException):
        status = int(exc.status_code)
        if status >= 500:
            log.error("%s %s -> %d", request.method, request.path, status, exc_info=exc)
        code = _SANIC_CODES.get(status, "http_error")
        return json({"error": code, "message": str(exc)}, status=status)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json({"error": "internal_error", "message": "internal error"}, status=500)
