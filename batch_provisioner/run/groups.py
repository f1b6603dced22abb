"""``groups``: the account's groups (``GET /v1/groups``, every page), and the groups file
(``id,name``) that a rehearsal reads back with ``--sandbox-groups``.

Like the other commands, nothing here prints or exits; it returns a frozen result and has a
sync twin.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from batch_provisioner.errors import ExitCode
from batch_provisioner.report.results import write_csv
from batch_provisioner.run.results import AccountGroup, GroupsResult
from batch_provisioner.run.sync import sync
from batch_provisioner.run.target import Target, check_target_options, open_client, select_target
from batch_provisioner.settings import ClientSettings

PathLike = str | os.PathLike[str]


async def groups_async(*, target: Target | None = None, sandbox: bool = False,
                       sandbox_url: str | None = None, api_url: str | None = None,
                       reports_dir: PathLike = "reports", out: PathLike | None = None,
                       on_target: Callable[[Target], None] = lambda _t: None) -> GroupsResult:
    """Every group of the account; with ``out``, also a CSV ``id,name`` (formula-like cells
    neutralised) that ``plan``/``apply`` ``sandbox_groups=`` read back unchanged.

    ``sandbox=True`` reopens the embedded sandbox state under ``reports_dir`` (as ``status``
    does): the groups an earlier ``--sandbox`` run seeded.
    """
    check_target_options(sandbox=sandbox, sandbox_url=sandbox_url, api_url=api_url)
    with select_target(target=target, sandbox=sandbox, sandbox_url=sandbox_url,
                       api_url=api_url, reports_dir=Path(reports_dir)) as tgt:
        on_target(tgt)
        async with open_client(tgt, ClientSettings()) as client:
            items = await client.list_groups()
    found = tuple(AccountGroup(str(item["id"]), str(item.get("name") or ""))
                  for item in items if item.get("id"))
    paths: dict[str, Path] = {}
    if out is not None:
        frame = pl.DataFrame({"id": [g.id for g in found], "name": [g.name for g in found]},
                             schema={"id": pl.String, "name": pl.String})
        write_csv(frame, Path(out))
        paths["groups.csv"] = Path(out)
    return GroupsResult(found, ExitCode.OK, paths)


groups = sync(groups_async)
