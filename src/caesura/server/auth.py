"""Optional bearer-token authentication.

With a token configured, every route except ``/healthz`` and ``/metrics`` requires
``Authorization: Bearer <token>``. WebSocket clients that cannot set headers (browsers) may
pass ``?token=<token>`` (or ``access_token``) in the URL instead; prefer the header, since
URLs end up in logs. Tokens are compared in constant time. EchoKit sends no token, so leave
auth off (the default) when EchoKit talks to the server over a trusted network, or put the
server behind a proxy that adds the header.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

__all__ = ["OPEN_PATHS", "check_token", "extract_token"]

#: Paths that never require a token (probes and scrapers).
OPEN_PATHS = frozenset({"/healthz", "/metrics"})


def extract_token(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The bearer token of a request: ``Authorization: Bearer ...`` first, then the query."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if query is not None:
        for key in ("token", "access_token"):
            found = query.get(key)
            if found:
                return found
    return None


def check_token(expected: str | None, presented: str | None) -> bool:
    """True when auth is off (``expected is None``) or ``presented`` matches (constant time)."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
