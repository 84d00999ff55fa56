"""Fixtures that run the real `sesame` binary.

The binary is $SESAME_BIN, or ../../target/debug/sesame relative to
clients/python. A missing binary fails the tests (it never skips them).
Each server runs in its own temporary folder with a fresh SQLite database and
SESAME_MAIL_TRANSPORT=log; it is stopped with SIGTERM at teardown, and the
log of every server a test used is attached to that test's failure report.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sesame_client import SesameClient

CLIENT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BIN = CLIENT_DIR / ".." / ".." / "target" / "debug" / "sesame"

KEY_RE = re.compile(r"sesame_[A-Za-z0-9_-]+")
LISTENING_RE = re.compile(r"sesame listening.*addr=127\.0\.0\.1:(\d+)")


def sesame_binary() -> Path:
    configured = os.environ.get("SESAME_BIN")
    path = Path(configured).resolve() if configured else DEFAULT_BIN.resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"sesame server binary not found at {path} "
            f"({'from $SESAME_BIN' if configured else 'default: ../../target/debug/sesame'}). "
            "Build it with `cargo build --bin sesame` at the repository root, "
            "or point SESAME_BIN at it.",
            pytrace=False,
        )
    return path


class SesameServer:
    """One `sesame serve` process (restartable on the same database and port)."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.database_url = f"sqlite://{workdir / 'sesame.db'}"
        self.port: int | None = None
        self.admin_key: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        assert self.port is not None
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESAME_")}
        env["SESAME_MAIL_TRANSPORT"] = "log"
        env.pop("RUST_LOG", None)
        return env

    def start(self, port: int | None = None, timeout: float = 30.0) -> None:
        """Start on `port` (default: the previous port, else a free one)."""
        assert self.process is None, "already running"
        if port is None:
            port = self.port or 0
        self.starts += 1
        stdout_path = self.workdir / f"server-{self.starts}.stdout"
        stderr_path = self.workdir / f"server-{self.starts}.stderr"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--database-url",
                    self.database_url,
                ],
                cwd=self.workdir,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self._env(),
            )
        deadline = time.monotonic() + timeout
        while True:
            match = LISTENING_RE.search(stderr_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                break
            returncode = self.process.poll()
            if returncode is not None:
                self.process = None
                raise RuntimeError(
                    f"sesame exited with status {returncode} before listening:\n"
                    + stderr_path.read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sesame did not log 'sesame listening' within {timeout}s")
            time.sleep(0.02)
        if self.admin_key is None:
            key = KEY_RE.search(stdout_path.read_text(errors="replace"))
            if key is None:
                raise RuntimeError("sesame printed no admin API key on its first start")
            self.admin_key = key.group(0)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then wait (SIGKILL if it does not stop in time)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"sesame did not stop within {timeout}s of SIGTERM")

    def create_key(self, name: str, role: str) -> str:
        result = subprocess.run(
            [
                str(self.binary),
                "--database-url",
                self.database_url,
                "keys",
                "create",
                "--name",
                name,
                "--role",
                role,
            ],
            cwd=self.workdir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        key = KEY_RE.search(result.stdout)
        if result.returncode != 0 or key is None:
            raise RuntimeError(f"keys create failed ({result.returncode}): {result.stdout}{result.stderr}")
        return key.group(0)

    def logs(self) -> str:
        parts = []
        for n in range(1, self.starts + 1):
            for stream in ("stdout", "stderr"):
                path = self.workdir / f"server-{n}.{stream}"
                if path.exists():
                    parts.append(f"--- start {n} {stream} ({path}) ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for server in getattr(item, "sesame_servers", []):
            report.sections.append(("sesame server log", server.logs()))


@pytest.fixture(scope="session")
def sesame_bin() -> Path:
    return sesame_binary()


@pytest.fixture
def server(request: pytest.FixtureRequest, sesame_bin: Path, tmp_path: Path) -> Iterator[SesameServer]:
    srv = SesameServer(sesame_bin, tmp_path)
    request.node.sesame_servers = [srv]
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: SesameServer) -> Iterator[SesameClient]:
    assert server.admin_key is not None
    with SesameClient(server.target, api_key=server.admin_key) as c:
        yield c


@pytest.fixture
def submitter(server: SesameServer) -> Iterator[SesameClient]:
    """A backend's client (submitter key): the admin may not approve what it submitted itself."""
    with SesameClient(server.target, api_key=server.create_key("backend", "submitter")) as c:
        yield c


DELAY_PROXY = CLIENT_DIR.parent / "testing" / "delay_proxy.py"


class DelayProxy:
    """``clients/testing/delay_proxy.py`` in front of a server: on the first
    connection, the server's answers are held ``hold_ms`` from the client's
    first request on (see the script's header)."""

    def __init__(self, workdir: Path, target: str, hold_ms: int) -> None:
        port_file = workdir / f"delay-proxy-{time.monotonic_ns()}.port"
        self.process = subprocess.Popen(
            [sys.executable, str(DELAY_PROXY), str(port_file), target, str(hold_ms)],
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the delay proxy wrote no port")
            time.sleep(0.02)
        self.target = f"127.0.0.1:{int(port_file.read_text())}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def delay_proxy(server: SesameServer, tmp_path: Path) -> Iterator[Callable[[int], DelayProxy]]:
    """Starts delay proxies in front of ``server``; all stopped at teardown."""
    proxies: list[DelayProxy] = []

    def start(hold_ms: int) -> DelayProxy:
        proxy = DelayProxy(tmp_path, server.target, hold_ms)
        proxies.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.stop()
