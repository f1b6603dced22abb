"""Where requests go: Fivetran (credentials from the environment), the embedded sandbox, or a
sandbox already serving at a URL; and a client inside the budgets of that target.

A sandbox announces its own budgets (``GET /sandbox/limits``); every command that talks to one
adopts them here, and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from batch_provisioner.api.budgets import BudgetGate
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import InputError, OutputError
from batch_provisioner.models import counted
from batch_provisioner.report.files import ensure_dir
from batch_provisioner.settings import ApiCredentials, ClientSettings
from batch_provisioner.sheet.groups_file import read_groups_file
from batch_provisioner.sheet.source import open_source

if TYPE_CHECKING:
    from batch_provisioner.sandbox import SandboxHandle

SANDBOX_STATE = Path("sandbox") / "state.sqlite"  # under the reports dir
SHEET_GROUPS_NOTICE = (
    "the sandbox seeded the sheet's {groups}, so group mistakes cannot show; pass "
    "--sandbox-groups FILE (batch-provisioner groups --out FILE) to rehearse against the real "
    "account's groups")
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


@dataclass(frozen=True)
class SheetGroups:
    """The groups a sheet names: what a rehearsal sandbox is seeded with when no
    ``--sandbox-groups`` file says which groups the account really has."""

    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def seed(self) -> dict[str, str]:
        return sandbox_groups(self.ids, self.names)

    def notice(self) -> str:
        return SHEET_GROUPS_NOTICE.format(
            groups=counted(len(set(self.ids)) + len(set(self.names)), "group"))


GroupsSource = str | os.PathLike[str] | Mapping[str, str]
#: Seed connections for the embedded sandbox: a JSON or CSV file, or the seed objects.
ConnectionsSource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


def check_target_options(*, sandbox: bool = False, sandbox_url: str | None = None,
                         api_url: str | None = None, sandbox_groups: GroupsSource | None = None,
                         sandbox_profile: str | None = None,
                         sandbox_connections: ConnectionsSource | None = None,
                         reports_dir: Path | None = None) -> dict[str, str] | None:
    """The one check of the target flags (every command): ``InputError`` (exit 2) for flags
    that contradict each other or need ``--sandbox``; a ``--sandbox-groups`` file is read and
    checked here too, before anything is written, and with ``reports_dir`` so is the saved
    sandbox state it would reopen; so is a ``--sandbox-connections`` file. Returns the groups
    (None without a file);
    ``sandbox_groups`` may also be the groups themselves (id -> name)."""
    from batch_provisioner.sandbox.config import PROFILES

    chosen = [flag for flag, given in (("--sandbox", sandbox), ("--sandbox-url", sandbox_url),
                                       ("--api-url", api_url)) if given]
    if len(chosen) > 1:
        raise InputError(f"{' and '.join(chosen)} each say where requests go; give one of "
                         "--api-url URL, --sandbox or --sandbox-url URL")
    for flag, given in (("--sandbox-groups", sandbox_groups),
                        ("--sandbox-profile", sandbox_profile),
                        ("--sandbox-connections", sandbox_connections)):
        if given is not None and not sandbox:
            raise InputError(f"{flag} configures the embedded sandbox: it needs --sandbox "
                             "(a sandbox at --sandbox-url keeps its own groups and profile)")
    if sandbox_profile is not None and sandbox_profile not in PROFILES:
        raise InputError(f"unknown sandbox profile {sandbox_profile!r}; expected one of "
                         f"{', '.join(PROFILES)}")
    if sandbox_connections is not None:
        read_sandbox_connections(sandbox_connections)  # a bad file: exit 2 before any write
    if sandbox_groups is None:
        return None
    groups = (dict(sandbox_groups) if isinstance(sandbox_groups, Mapping)
              else read_groups_file(open_source(sandbox_groups)))
    if reports_dir is not None:
        _check_saved_groups(reports_dir / SANDBOX_STATE, groups)
    return groups


def read_sandbox_connections(source: ConnectionsSource) -> tuple[dict[str, Any], ...]:
    """The seed connections of a ``--sandbox-connections`` file (JSON or CSV, see
    :mod:`batch_provisioner.sandbox.seed`), or the seed objects given; a file that cannot be
    read or holds something else is an ``InputError`` (exit 2) naming it."""
    from batch_provisioner.sandbox.seed import read_seed_file

    if not isinstance(source, str | os.PathLike):
        return tuple(dict(seed) for seed in source)
    try:
        return read_seed_file(Path(source))
    except ValueError as exc:
        raise InputError(f"--sandbox-connections: {exc}", path=str(source)) from None


@contextlib.contextmanager
def embedded_sandbox(reports_dir: Path, groups: Mapping[str, str] | None = None,
                     profile: str = "fast", *, notice: str | None = None,
                     connections: Sequence[Mapping[str, Any]] = (),
                     exact: bool = False) -> Iterator[Target]:
    """Start the embedded sandbox in a thread, its state kept in ``<reports_dir>/sandbox``.

    With ``groups`` (apply, plan) it is seeded with them; without (status, connect-cards,
    rollback, groups) it reopens the state an earlier ``--sandbox`` run left behind.
    ``connections`` are added to the state as if made earlier (a seed the state holds already
    is skipped); their groups are seeded too, unless the groups are ``exact`` (a
    ``--sandbox-groups`` file), when a seed in another group is an input error. ``notice`` is
    shown to a person as a warning.
    """
    from batch_provisioner.sandbox import DEFAULT_GROUPS, run_in_thread

    state = reports_dir / SANDBOX_STATE
    warning = notice
    if groups is None and not state.is_file() and not connections:
        warning = (f"no sandbox state at {state}: the embedded sandbox starts afresh (its demo "
                   "groups, no connections; was the run made with --sandbox and this "
                   "--reports-dir?)")
    if connections and not exact:
        groups = dict(DEFAULT_GROUPS if groups is None else groups)
        for seed in connections:
            groups.setdefault(str(seed.get("group_id")), str(seed.get("group_id")))
    ensure_dir(state.parent)  # a file where the reports folder belongs: exit 2, named
    options: dict[str, Any] = {"profile": profile, "state_path": state,
                               "connections": tuple(connections)}
    if groups is not None:
        options["groups"] = dict(groups)
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(run_in_thread(**options))
        except ValueError as exc:  # a seed connection the sandbox refuses
            raise InputError(f"--sandbox-connections: {exc}") from None
        except (sqlite3.Error, OSError) as exc:  # a full disk: exit 2 naming the state file
            raise OutputError(f"cannot write {state} (the embedded sandbox's state): {exc}",
                              path=str(state)) from None
        shown = f"profile {profile}, state {state}" if groups is not None else f"state {state}"
        yield _sandbox_target(handle, f"Embedded Fivetran sandbox at {handle.url} ({shown})",
                              warning)


def _check_saved_groups(state: Path, groups: Mapping[str, str]) -> None:
    """Refuse a saved sandbox state whose groups differ from a ``--sandbox-groups`` file's:
    the sandbox keeps what it saved, so a group mistake naming one of those could not show."""
    from batch_provisioner.sandbox.store import Store

    if not state.is_file():
        return
    store = Store({}, state)
    try:
        saved = {g.id: g.name for g in store.groups.values()}
    finally:
        store.close()
    other = sorted(f"{gid}={name}" for gid, name in saved.items() if groups.get(gid) != name)
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise InputError(f"holds groups an earlier rehearsal seeded that the --sandbox-groups "
                         f"file does not list ({shown}), so group mistakes naming them could "
                         "not show; use a fresh --reports-dir for this rehearsal",
                         path=str(state))


async def client_settings_for(target: Target, settings: ClientSettings,
                              transport: httpx.AsyncBaseTransport | None = None
                              ) -> ClientSettings:
    """``settings`` with the sandbox's own budgets when the target announces them; a budget
    set on purpose (``settings.explicit_budgets``: a command-line flag) keeps its value."""
    if not target.adopt_sandbox_limits:
        return settings
    probe = BudgetGate((), 1, max_wait=settings.retry.max_wait)
    async with FivetranClient(target.credentials, settings, gate=probe,
                              transport=transport) as client:
        announced = await client.sandbox_limits()
    explicit = settings.explicit_budgets
    budgets = [b for b in announced if b.name not in explicit]
    budgets += [b for b in settings.budgets if b.name in explicit]
    _log.info("budget.adopted", budgets=[f"{b.name}={b.limit}/{b.window_seconds}s"
                                          for b in budgets], explicit=sorted(explicit))
    return replace(settings, budgets=tuple(budgets))


@contextlib.asynccontextmanager
async def open_client(target: Target, settings: ClientSettings,
                      transport: httpx.AsyncBaseTransport | None = None
                      ) -> AsyncIterator[FivetranClient]:
    """A client inside the target's budgets (a sandbox's own, when it announces them)."""
    settings = await client_settings_for(target, settings, transport)
    async with FivetranClient(target.credentials, settings, transport=transport,
                              answered=target.adopt_sandbox_limits) as client:
        yield client


@contextlib.contextmanager
def select_target(*, target: Target | None = None, sandbox: bool = False,
                  sandbox_url: str | None = None, api_url: str | None = None,
                  reports_dir: Path = Path("reports"), groups: SheetGroups | None = None,
                  sandbox_groups: GroupsSource | None = None,
                  sandbox_profile: str | None = None,
                  sandbox_connections: ConnectionsSource | None = None,
                  env: Mapping[str, str] | None = None) -> Iterator[Target]:
    """The one place a command's target is chosen: a given ``target``; the embedded sandbox
    (seeded with exactly the ``sandbox_groups`` file's groups, else with the sheet's
    ``groups``, else reopening its saved state; plus the ``sandbox_connections``); a running
    sandbox at ``sandbox_url``; else Fivetran at ``api_url`` with credentials from the env.
    Contradicting flags: exit 2."""
    exact = check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url,
                                 sandbox_groups=sandbox_groups, sandbox_profile=sandbox_profile,
                                 sandbox_connections=sandbox_connections,
                                 reports_dir=reports_dir)
    seeds = read_sandbox_connections(sandbox_connections) if sandbox_connections else ()
    if target is not None:
        yield target
    elif sandbox:
        profile = sandbox_profile or "fast"
        if exact is not None:
            seeded = embedded_sandbox(reports_dir, exact, profile, connections=seeds,
                                      exact=True)
        elif groups is not None:
            seeded = embedded_sandbox(reports_dir, groups.seed(), profile,
                                      notice=groups.notice(), connections=seeds)
        else:
            seeded = embedded_sandbox(reports_dir, None, profile, connections=seeds)
        with seeded as tgt:
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
