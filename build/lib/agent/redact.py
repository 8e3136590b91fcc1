"""Remove secrets from camera URLs before they reach a log, a message or an exception."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Greedy up to the last '@' before the path: passwords may themselves contain '@'.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]*@)")
_QUERY_SECRET = re.compile(r"(?i)((?:password|passwd|pwd|pass|token|key)=)[^&\s]*")


def redact_url(url: str) -> str:
    """Return ``url`` with any password or user name replaced by ``***``.

    Works on malformed URLs too (a regex fallback), since those are the ones that end up
    in error messages.
    """
    text = _USERINFO.sub(lambda m: m.group("scheme") + "***@", url)
    text = _QUERY_SECRET.sub(r"\1***", text)
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    return urlunsplit(parts)


def redact_text(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of each secret (and URL userinfo) in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
