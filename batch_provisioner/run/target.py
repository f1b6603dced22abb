"""Where requests go: Fivetran (credentials from the environment), the embedded sandbox, or a
sandbox already serving at a URL; and a client inside the budgets of that target.

A sandbox announces its own budgets (``GET /sandbox/limits``); every command that talks to one
adopts them here, and nowhere else.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import InputError
from batch_provisioner.settings import ApiCredentials, ClientSettings

if TYPE_CHECKING:
    from batch_provisioner.sandbox import SandboxHandle

SANDBOX_STATE = Path("sandbox") / "state.sqlite"  # under the reports dir
_log = structlog.get_logger("batch_provisioner.target")


@dataclass(frozen=True)
class Target:
    """An API to talk to. ``adopt_sandbox_limits``: ask it for its budgets first."""

    credentials: ApiCredentials
    adopt_sandbox_limits: bool = False
    #: A line for a person: which embedded sandbox this is (None for a real API).
    description: str | None = None
    #: A caution for a person (e.g. the sandbox state the run needs is not there).
    warning: str | None = None


def from_environment(api_url: str | None = None, env: Mapping[str, str] | None = None) -> Target:
    """The Fivetran API with FIVETRAN_API_KEY/SECRET (never command-line values)."""
    credentials = ApiCredentials.from_env(env, base_url=api_url)
    if credentials is None:
        raise InputError("set FIVETRAN_API_KEY and FIVETRAN_API_SECRET (or use --sandbox); "
                         "credentials are never taken on the command line")
    return Target(credentials)


def running_sandbox(url: str, env: Mapping[str, str] | None = None) -> Target:
    """A sandbox already serving at ``url``; default credentials unless the env sets some."""
    credentials = ApiCredentials.from_env(env, base_url=url)
    return Target(credentials or ApiCredentials("sandbox", "sandbox", url.rstrip("/")), True)


def sandbox_groups(group_ids: Iterable[str], group_names: Iterable[str]) -> dict[str, str]:
    """The groups an embedded rehearsal sandbox starts with: its defaults plus the sheet's."""
    from batch_provisioner.sandbox import DEFAULT_GROUPS

    groups = dict(DEFAULT_GROUPS)
    for group_id in group_ids:
        groups.setdefault(group_id, group_id)
    for name in group_names:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "group"
        if name not in groups.values():
            groups.setdefault(slug, name)
    return groups


@contextlib.contextmanager
def embedded_sandbox(reports_dir: Path, groups: Mapping[str, str] | None = None,
                     profile: str = "fast") -> Iterator[Target]:
    """Start the embedded sandbox in a thread, its state kept in ``<reports_dir>/sandbox``.

    With ``groups`` (apply, plan) it is seeded with them; without (status, connect-cards,
    rollback) it reopens the state an earlier ``--sandbox`` run left behind.
    """
    from batch_provisioner.sandbox import run_in_thread

    state = reports_dir / SANDBOX_STATE
    warning = None
    if groups is None and not state.is_file():
        warning = (f"no sandbox state at {state}: the embedded sandbox starts empty (was the "
                   "run made with --sandbox and this --reports-dir?)")
    state.parent.mkdir(parents=True, exist_ok=True)
    seeded = run_in_thread(profile=profile, state_path=state, groups=dict(groups)) \
        if groups is not None else run_in_thread(profile=profile, state_path=state)
    with seeded as handle:
        shown = f"profile {profile}, state {state}" if groups is not None else f"state {state}"
        yield _sandbox_target(handle, f"Embedded Fivetran sandbox at {handle.url} ({shown})",
                              warning)


async def client_settings_for(target: Target, settings: ClientSettings,
                              transport: httpx.AsyncBaseTransport | None = None
                              ) -> ClientSettings:
    """``settings`` with the sandbox's own budgets when the target announces them."""
    if not target.adopt_sandbox_limits:
        return settings
    probe = BudgetGate((), 1, max_wait=settings.retry.max_wait)
    async with FivetranClient(target.credentials, settings, gate=probe,
                              transport=transport) as client:
        budgets = await client.sandbox_limits()
    _log.info("budget.adopted", budgets=[f"{b.name}={b.limit}/{b.window_seconds}s"
                                          for b in budgets])
    return replace(settings, budgets=tuple(budgets))


@contextlib.asynccontextmanager
async def open_client(target: Target, settings: ClientSettings,
                      transport: httpx.AsyncBaseTransport | None = None
                      ) -> AsyncIterator[FivetranClient]:
    """A client inside the target's budgets (a sandbox's own, when it announces them)."""
    settings = await client_settings_for(target, settings, transport)
    async with FivetranClient(target.credentials, settings, transport=transport) as client:
        yield client


@contextlib.contextmanager
def select_target(*, target: Target | None = None, sandbox: bool = False,
                  sandbox_url: str | None = None, api_url: str | None = None,
                  reports_dir: Path = Path("reports"),
                  groups: Callable[[], Mapping[str, str]] | None = None,
                  env: Mapping[str, str] | None = None) -> Iterator[Target]:
    """The one place a command's target is chosen: a given ``target``; the embedded sandbox
    (seeded with ``groups()``, or reopening its saved state when ``groups`` is None); a running
    sandbox at ``sandbox_url``; else Fivetran at ``api_url`` with credentials from the env."""
    if target is not None:
        yield target
    elif sandbox:
        with embedded_sandbox(reports_dir, groups() if groups is not None else None) as tgt:
            yield tgt
    elif sandbox_url:
        yield running_sandbox(sandbox_url, env)
    else:
        yield from_environment(api_url, env)


class Sandbox:
    """The embedded Fivetran API sandbox as a context manager, for scripts and notebooks::

        with Sandbox(groups={"my_group": "My Group"}) as sandbox:
            result = batch_provisioner.apply("sheet.xlsx", target=sandbox.target)

    It serves on a free loopback port in a background thread until the block ends.
    Keyword arguments are those of ``batch_provisioner.sandbox.SandboxConfig``.
    """

    def __init__(self, **config: Any) -> None:
        self._config = config
        self._stack: contextlib.ExitStack | None = None
        self._handle: SandboxHandle | None = None

    def __enter__(self) -> Sandbox:
        from batch_provisioner.sandbox import run_in_thread

        self._stack = contextlib.ExitStack()
        self._handle = self._stack.enter_context(run_in_thread(**self._config))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._handle = None

    @property
    def handle(self) -> SandboxHandle:
        """The running sandbox (url, credentials, ``ledger()``, ``limits()``)."""
        if self._handle is None:
            raise RuntimeError("the sandbox is not running: use it as `with Sandbox() as box:`")
        return self._handle

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def target(self) -> Target:
        return _sandbox_target(self.handle, f"Fivetran sandbox at {self.handle.url}")


def _sandbox_target(handle: SandboxHandle, description: str,
                    warning: str | None = None) -> Target:
    """A running sandbox as a target: its credentials, its budgets adopted."""
    return Target(ApiCredentials(handle.api_key, handle.api_secret, handle.url), True,
                  description=description, warning=warning)
