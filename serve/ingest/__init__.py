"""Turning what sources send (Fineract hooks, the generic flat format) into domain transactions."""

from serve.ingest.events import ParsedEvent, ParseOptions
from serve.ingest.fineract import parse_fineract
from serve.ingest.generic import parse_generic, verify_signature

__all__ = ["ParseOptions", "ParsedEvent", "parse_fineract", "parse_generic", "verify_signature"]
