"""A real nginx (Debian's ``nginx`` package) on loopback, running the repository's load
balancer config (deploy/nginx/kensa.conf.template) with the upstream and port a test names.

Where nginx is absent the tests that need it skip, unless ``KENSA_REQUIRE_NGINX=1`` (set by
``.ci/run``), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx" / "kensa.conf.template"
REQUIRE = os.environ.get("KENSA_REQUIRE_NGINX") == "1"
UPSTREAM = re.compile(r"^(\s*)server inspector:\$\{KENSA_PORT\}([^;]*);", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen 8080;", re.MULTILINE)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def need_nginx() -> str:
    found = nginx_binary()
    if found:
        return found
    if REQUIRE:
        pytest.fail("nginx is required here (KENSA_REQUIRE_NGINX=1) but not installed: "
                    "apt-get install nginx")
    pytest.skip("nginx is not installed (apt-get install nginx)")


def render(upstreams: list[str], port: int) -> str:
    """The template as nginx's image renders it, with ``upstreams`` (``host:port``) in place
    of the compose service and nginx on ``127.0.0.1:port``."""
    text = TEMPLATE.read_text()
    assert len(UPSTREAM.findall(text)) == 1 and len(LISTEN.findall(text)) == 1
    text = UPSTREAM.sub(lambda m: "".join(f"{m.group(1)}server {u}{m.group(2)};\n"
                                          for u in upstreams).rstrip("\n"), text)
    return LISTEN.sub(rf"\1listen 127.0.0.1:{port};", text)


def write_config(folder: Path, upstreams: list[str], port: int) -> Path:
    """A whole nginx.conf in ``folder`` (pid, logs, temp files there) around :func:`render`."""
    folder.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp folders
    temps = "".join(f"    {kind}_temp_path {folder / kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n    access_log {folder / 'access.log'};\n{temps}"
        f"{render(upstreams, port)}\n}}\n")
    return conf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_nginx(folder: Path, upstreams: list[str]) -> Iterator[str]:
    """nginx in front of ``upstreams``; yields its base URL, stops it at the end."""
    binary = need_nginx()
    port = free_port()
    conf = write_config(folder, upstreams, port)
    proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("nginx never listened") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
