"""Reaching Vespa: a URL's base, a fast reachability check, and the two errors every client step raises."""
from __future__ import annotations

import socket
from urllib.parse import urlparse

from common.errors import UserError


class VespaUnreachable(UserError, ConnectionError):
    """Nothing answers where Vespa should, or what answers is not Vespa."""


class VespaError(UserError):
    """Vespa (or the container engine in front of it) said no: a rejected deploy, documents that failed."""


def base_url(url: str) -> str:
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


def ensure_reachable(url: str, timeout: float = 3.0,
                     hint: str = "Is the container running and the port right (8080)? Deploy with `siamese "
                                 "deploy` first.") -> None:
    """Fail fast, with a message a person can act on, when nothing answers at ``url``."""
    parsed = urlparse(base_url(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise VespaUnreachable(f"cannot reach Vespa at {url} ({e.__class__.__name__}: {e}). {hint}") from None
