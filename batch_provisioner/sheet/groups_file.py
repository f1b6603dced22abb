"""A groups file (``--sandbox-groups``): the account's groups as ``id,name`` rows.

``batch-provisioner groups --out F.csv`` writes one from a real account; a rehearsal sandbox
is then seeded with exactly these groups, so a ``group_id`` or ``group_name`` the account does
not have shows up as ``invalid`` before anything is sent for real. The header is ``id,name``
(as the groups command writes it) or ``group_id,group_name`` (as a sheet names them); other
columns are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.read import ROW, read_table
from batch_provisioner.sheet.source import Source, as_source, named

#: What a Fivetran group id looks like: letters, digits, ``_`` and ``-``.
GROUP_ID = re.compile(r"[A-Za-z0-9_-]+")
_HEADERS = (("id", "name"), ("group_id", "group_name"))


def read_groups_file(path: Path | Source) -> dict[str, str]:
    """Group id -> name, in file order. ``InputError`` (exit 2) naming the file and row for a
    missing or empty file, a header without ``id,name``, a blank or malformed id, a blank
    name, or an id given twice. A downloaded file is named by its URL."""
    source = as_source(path)
    with named(source):
        table = read_table(source.local)
    frame = table.frame
    where = source.name if source.remote else table.label
    columns = next(((i, n) for i, n in _HEADERS if i in frame.columns and n in frame.columns),
                   None)
    if columns is None:
        found = ", ".join(table.headers.values()) or "none"
        raise InputError(f"a groups file needs the columns id,name (or group_id,group_name); "
                         f"found {found}", path=where, row=table.header_row)
    id_column, name_column = columns
    if frame.height == 0:
        raise InputError("holds no groups (a header and no rows); write one with "
                         "`batch-provisioner groups --out FILE`", path=where)
    groups: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for row, group_id, name in frame.select(ROW, id_column, name_column).iter_rows():
        if not group_id:
            raise InputError("no group id", path=where, row=row, column=id_column)
        if not GROUP_ID.fullmatch(group_id):
            raise InputError(f"{group_id!r} is not a Fivetran group id (letters, digits, "
                             "_ and - only)", path=where, row=row, column=id_column)
        if not name:
            raise InputError(f"group {group_id!r} has no name", path=where, row=row,
                             column=name_column)
        if group_id in groups:
            raise InputError(f"group id {group_id!r} is also on row {first_row[group_id]}",
                             path=where, row=row, column=id_column)
        groups[group_id] = name
        first_row[group_id] = row
    return groups
