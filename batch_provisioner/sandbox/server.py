"""Starting and stopping the sandbox: in the foreground, in a thread, or in a process.

* :func:`serve` runs it in the foreground (the CLI); Ctrl-C / SIGTERM stop it cleanly.
* :func:`run_in_thread` runs it on a free port in a background thread (tests).
* :func:`run_in_process` runs ``python -m batch_provisioner.sandbox serve --port 0`` and
  reads the URL from its first stdout line (tests that kill the client process).

Each yields a :class:`SandboxHandle` with the URL, the credentials and helpers that talk
to the ``/sandbox`` endpoints over HTTP (stdlib ``urllib``; the sandbox depends on
nothing but the standard library, uvicorn, typer and anyio).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from batch_provisioner.sandbox.app import SandboxApp
from batch_provisioner.sandbox.config import SandboxConfig, config_from_overrides
from batch_provisioner.sandbox.protocol import AbortableH11Protocol

API_KEY_ENV = "FIVETRAN_SANDBOX_API_KEY"
API_SECRET_ENV = "FIVETRAN_SANDBOX_API_SECRET"  # noqa: S105 - a variable name, not a secret
STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
_BANNER = "Fivetran sandbox listening on "
#: urllib opener that ignores *_proxy variables: the sandbox is always on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxRequestError(RuntimeError):
    """A ``/sandbox`` helper call answered with an HTTP error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"sandbox answered {status}: {detail}")
        self.status = status


@dataclass(frozen=True)
class SandboxHandle:
    """A running sandbox: where it is, its credentials, and test helpers over HTTP."""

    url: str
    api_key: str
    api_secret: str = field(repr=False)
    config: SandboxConfig
    process: subprocess.Popen[str] | None = field(default=None, repr=False, compare=False)

    @property
    def auth(self) -> tuple[str, str]:
        """(api_key, api_secret) for HTTP Basic auth."""
        return (self.api_key, self.api_secret)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _DIRECT.open(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode(errors="replace")
            raise SandboxRequestError(exc.code, detail) from None

    def health(self) -> dict[str, Any]:
        """``GET /sandbox/health``."""
        result: dict[str, Any] = self._call("GET", "/sandbox/health")
        return result

    def ledger(self, since: int = 0) -> dict[str, Any]:
        """``GET /sandbox/ledger``: requests (after ``since``), creates, counts."""
        result: dict[str, Any] = self._call("GET", f"/sandbox/ledger?since={since}")
        return result

    def limits(self) -> dict[str, Any]:
        """``GET /sandbox/limits``."""
        result: dict[str, Any] = self._call("GET", "/sandbox/limits")
        return result

    def script(self, faults: list[dict[str, Any]], *, clear: bool = False) -> dict[str, Any]:
        """Script per-request faults (``[{"method", "path", "fault", "match", "times"}]``)."""
        result: dict[str, Any] = self._call(
            "POST", "/sandbox/faults", {"script": faults, "clear": clear}
        )
        return result

    def set_faults(self, spec: str, seed: int | None = None) -> dict[str, Any]:
        """Swap the probabilistic fault spec (and seed) at run time."""
        body: dict[str, Any] = {"faults": spec}
        if seed is not None:
            body["seed"] = seed
        result: dict[str, Any] = self._call("POST", "/sandbox/faults", body)
        return result

    def reset(self) -> None:
        """Clear connections, ledger, budget windows and fault state."""
        self._call("POST", "/sandbox/reset", {})

    def use_budget(self, count: int, applies_to: str = "all") -> int:
        """``POST /sandbox/usage``: as if other tools of the account sent ``count`` requests
        now (``count=0`` with ``clear``: see :meth:`clear_usage`); how many were counted."""
        result: dict[str, Any] = self._call("POST", "/sandbox/usage",
                                            {"applies_to": applies_to, "count": count})
        return int(result["counted"])

    def clear_usage(self) -> None:
        """Forget every budget window's events (other tools' and ours)."""
        self._call("POST", "/sandbox/usage", {"clear": True})

    def authorize(self, connection_id: str) -> dict[str, Any]:
        """Mark a connection ``connected``, as a completed connect card would."""
        result: dict[str, Any] = self._call(
            "POST", f"/sandbox/connections/{connection_id}/authorize", {}
        )
        return result


class _SandboxServer(uvicorn.Server):
    """uvicorn.Server that reports its start and handles signals without re-raising them."""

    def __init__(
        self, config: uvicorn.Config, app: SandboxApp, on_started: Callable[[], None] | None
    ) -> None:
        super().__init__(config)
        self.sandbox_app = app
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.sandbox_app.begin_shutdown()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Ask the server to stop (thread-safe: it polls the flag)."""
        self.sandbox_app.begin_shutdown()
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(
    app: SandboxApp, config: SandboxConfig, *, log_config: dict[str, Any] | None
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=AbortableH11Protocol,
        loop="auto",
        lifespan="off",
        access_log=False,
        log_config=log_config,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=65,  # idle keep-alive like a load balancer, not uvicorn's 5 s
    )


#: Logging for the foreground server: warnings and errors on stderr, no access log.
FOREGROUND_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def serve(config: SandboxConfig, *, announce: Callable[[str], None]) -> None:
    """Run the sandbox in the foreground until SIGINT/SIGTERM; ``announce(url)`` once listening."""
    app = SandboxApp(config)  # a bad seed raises here, before a port is taken
    try:
        sock = _bind(config.host, config.port)
    except OSError:
        app.close()
        raise
    url = _url(sock)
    server = _SandboxServer(
        _uvicorn_config(app, config, log_config=FOREGROUND_LOG_CONFIG), app, lambda: announce(url)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        app.close()


@contextlib.contextmanager
def run_in_thread(config: SandboxConfig | None = None, **overrides: Any) -> Iterator[SandboxHandle]:
    """Run a sandbox in a background thread on a free port (unless ``port`` is given).

    Keyword arguments are :class:`SandboxConfig` fields and override ``config``.
    """
    cfg = config_from_overrides(config, overrides)
    app = SandboxApp(cfg)  # a bad seed raises here, before a port is taken
    try:
        sock = _bind(cfg.host, cfg.port)
    except OSError:
        app.close()
        raise
    started = threading.Event()
    server = _SandboxServer(_uvicorn_config(app, cfg, log_config=None), app, started.set)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="fivetran-sandbox", daemon=True)
    thread.start()
    try:
        if not started.wait(STARTUP_TIMEOUT_SECONDS) or failure or not server.started:
            raise RuntimeError("the sandbox did not start") from (failure[0] if failure else None)
        yield SandboxHandle(_url(sock), cfg.api_key, cfg.api_secret, cfg)
    finally:
        server.stop()
        thread.join(STOP_TIMEOUT_SECONDS)
        sock.close()
        app.close()


def _child_args(cfg: SandboxConfig, seeds: Path | None = None) -> list[str]:
    args = ["serve", "--host", cfg.host, "--port", str(cfg.port), "--profile", cfg.profile]
    if seeds is not None:
        args += ["--connections", str(seeds)]
    for group_id, name in cfg.seeded_groups().items():
        args += ["--group", f"{group_id}={name}"]
    if cfg.faults:
        args += ["--faults", cfg.faults]
    args += ["--seed", str(cfg.seed), "--create-limit", str(cfg.create_limit)]
    if cfg.state_path is not None:
        args += ["--state", str(cfg.state_path)]
    if cfg.slow_ms is not None:
        args += ["--slow-ms", str(cfg.slow_ms)]
    return args


def _read_banner(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"the sandbox process printed nothing within {timeout:.0f} s")
    line = process.stdout.readline()
    if not line.startswith(_BANNER):
        raise RuntimeError(f"unexpected first line from the sandbox process: {line!r}")
    return line[len(_BANNER) :].split()[0]


def stop_process(process: subprocess.Popen[str], timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGINT a sandbox process, wait for it (SIGKILL after ``timeout``), close its pipes."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    for stream in (process.stdout, process.stderr, process.stdin):
        if stream is not None:
            stream.close()
    return code


@contextlib.contextmanager
def run_in_process(
    config: SandboxConfig | None = None, **overrides: Any
) -> Iterator[SandboxHandle]:
    """Run a sandbox as ``python -m batch_provisioner.sandbox serve`` in a child process.

    Keyword arguments are :class:`SandboxConfig` fields. The child's stderr is inherited.
    """
    cfg = config_from_overrides(config, overrides)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env[API_KEY_ENV], env[API_SECRET_ENV] = cfg.api_key, cfg.api_secret  # kept out of `ps`
    with tempfile.TemporaryDirectory(prefix="sandbox-seeds-") as folder:
        seeds = None
        if cfg.connections:  # the child reads its seed connections from a file
            seeds = Path(folder) / "connections.json"
            seeds.write_text(json.dumps([dict(c) for c in cfg.connections]), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "batch_provisioner.sandbox", *_child_args(cfg, seeds)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            url = _read_banner(process, STARTUP_TIMEOUT_SECONDS)
            yield SandboxHandle(url, cfg.api_key, cfg.api_secret, cfg, process)
        finally:
            stop_process(process)
