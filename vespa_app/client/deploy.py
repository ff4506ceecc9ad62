"""Deploy a package: to a config server (prepareandactivate), a local container (docker or podman), or Vespa
Cloud; ``deploy`` is the one reading of a target, for `siamese deploy` and `siamese run --vespa` alike."""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import httpx

from common.errors import ConfigError
from vespa_app.client.http import VespaError, VespaUnreachable, base_url, ensure_reachable


def _zip(package: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(package))
    return buffer.getvalue()


def wait_until_up(url: str, max_wait: float = 300) -> None:
    deadline = time.time() + max_wait
    last = ""
    while time.time() < deadline:
        try:
            r = httpx.get(f"{base_url(url)}/state/v1/health", timeout=5)
            if r.status_code == 200 and r.json().get("status", {}).get("code") == "up":
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(2)
    raise VespaUnreachable(f"the application at {url} did not come up within {max_wait:.0f} s (last: {last})")


def deploy_to_config_server(
    package, config_url: str, query_url: str | None = None, max_wait: float = 300
) -> str:
    """prepareandactivate on an existing config server, then wait for the container to answer."""
    package = Path(package)
    ensure_reachable(
        config_url, hint="Is the config server running and the port right (19071; queries go to 8080)?"
    )
    endpoint = f"{base_url(config_url)}/application/v2/tenant/default/prepareandactivate"
    r = httpx.post(endpoint, content=_zip(package), headers={"Content-Type": "application/zip"}, timeout=300)
    if r.status_code in (404, 405) or not r.headers.get("content-type", "").startswith("application/json"):
        # Vespa answers a deploy in JSON, even a rejected one; anything else is some other server
        raise VespaUnreachable(
            f"{config_url} is not a Vespa config server: HTTP {r.status_code} to {endpoint} "
            f"({r.text[:120]!r}). Give the config server's URL (port 19071; queries go to "
            "8080)."
        )
    if r.status_code != 200:
        raise VespaError(f"Vespa rejected the deploy of {package} (HTTP {r.status_code}): {r.text[:2000]}")
    host = urlparse(base_url(config_url)).hostname
    query_url = query_url or f"http://{host}:8080"
    wait_until_up(query_url, max_wait)
    return query_url


def container_engine() -> str | None:
    """'docker' or 'podman' when one is installed *and* its daemon answers; None otherwise."""
    import subprocess

    for engine in ("docker", "podman"):
        if shutil.which(engine):
            try:
                if subprocess.run([engine, "info"], capture_output=True, timeout=15).returncode == 0:
                    return engine
            except subprocess.TimeoutExpired:
                pass
    return None


def deploy_docker(package, port: int = 8080, max_wait: float = 600) -> str:
    """Start a Vespa container with docker (or podman through its docker socket) and deploy the package."""
    if not container_engine():
        raise VespaError(
            "no running container engine (docker or podman, with its daemon up). Start Docker, or "
            "deploy to a running Vespa with `--target http://CONFIG_SERVER:19071`, or to Vespa "
            "Cloud with `--target cloud`."
        )
    from vespa.deployment import VespaDocker

    app = VespaDocker(port=port).deploy_from_disk(
        "siamese", Path(package), max_wait_application=int(max_wait)
    )
    return f"{app.url}:{app.port}"


def check_key(key_location) -> None:
    """A Vespa Cloud API key must be a PEM private key; pyvespa's
    own failure is a traceback deep in a deploy."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(Path(key_location).read_bytes(), password=None)
    except OSError as e:
        raise ConfigError(f"--key {key_location}: cannot read it ({e.strerror})") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"--key {key_location}: not a PEM private key without a password ({e}). Give the API "
            "key Vespa Cloud's console made for the tenant (a .pem file)"
        ) from None


def deploy_cloud(package, tenant: str, application: str, key_location: str | None = None) -> str:
    from vespa.deployment import VespaCloud

    if key_location:
        check_key(key_location)

    cloud = VespaCloud(
        tenant=tenant, application=application, application_root=str(package), key_location=key_location
    )
    app = cloud.deploy()
    return app.url


def deploy(
    package,
    target: str,
    *,
    tenant: str | None = None,
    application: str | None = None,
    key: str | None = None,
    query_url: str | None = None,
    running_ok: bool = False,
) -> str:
    """The one reading of a deploy target: "docker", "cloud" (with ``tenant`` and ``application``), or a
    config server's URL (port 19071); with ``running_ok`` (``siamese run --vespa``), any other URL is the
    query endpoint of an application already deployed. Returns where queries go."""
    if target == "docker":
        return deploy_docker(package)
    if target == "cloud":
        if not (tenant and application):
            raise ConfigError("--target cloud needs --tenant and --application")
        return deploy_cloud(package, tenant, application, key)
    if running_ok and not target.rstrip("/").endswith(":19071"):
        return target
    return deploy_to_config_server(package, target, query_url)
