"""Reaching Vespa: a URL's base, a fast reachability check, and the two errors every client step raises."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from common.errors import ConfigError, UserError


class VespaUnreachable(UserError, ConnectionError):
    """Nothing answers where Vespa should, or what answers is not Vespa."""


class VespaError(UserError):
    """Vespa (or the container engine in front of it) said no: a rejected deploy, documents that failed."""


def base_url(url: str) -> str:
    """``url`` without a trailing slash, http:// where no scheme is given; ConfigError for anything that is
    not an http(s) URL with a host and a port in range (they would fail later as a traceback, or as every
    document "failed for good")."""
    given = url
    url = url if "://" in url else f"http://{url}"
    try:
        parsed = urlparse(url)
        _ = parsed.port  # raises for a port out of range or not a number
    except ValueError as e:
        raise ConfigError(
            f"{given!r} is not a URL Vespa can be reached at ({e}); give http(s)://HOST:PORT, "
            "e.g. http://localhost:8080"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        why = f"scheme {parsed.scheme!r}: Vespa answers http or https" if parsed.hostname else "no host"
        raise ConfigError(
            f"{given!r} is not a URL Vespa can be reached at ({why}); give http(s)://HOST:PORT, "
            "e.g. http://localhost:8080"
        )
    return url.rstrip("/")


def ensure_reachable(
    url: str,
    timeout: float = 3.0,
    hint: str = "Is the container running and the port right (8080)? Deploy with `siamese deploy` first.",
) -> None:
    """Fail fast, with a message a person can act on, when nothing answers at ``url``."""
    parsed = urlparse(base_url(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise VespaUnreachable(f"cannot reach Vespa at {url} ({e.__class__.__name__}: {e}). {hint}") from None
