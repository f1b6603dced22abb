"""Column guardrails: headers that would silently do the wrong thing are input errors.

A header the job does not know is the user's own column and rides along to every output,
unless it is one of these (each an ``InputError``, exit 2, before anything is sent; every such
header of a file is named in one error):

* **A misspelling of a known column.** Headers are compared after normalising (case, spaces,
  dashes: ``normalise_header``). A header *resembles* a known column when it is within
  ``max_edits`` of one of the column's forms:

  - the name itself (``sync_frequency``) or the name without underscores
    (``syncfrequency``, also compared with the header's own underscores removed): 1 edit for
    names shorter than 10 letters, 2 edits from 10 letters on;
  - its leading segment(s) when they are at least 5 letters, at least half of the name, and
    start no other known column (``timeframe`` for ``timeframe_months``, ``schedule`` for
    ``schedule_type``): 1 edit. A word that starts several columns (``client``: client_id and
    client_secret; ``group``: group_id and group_name) is a word of its own and passes.

  An edit is one insertion, deletion, substitution, or swap of two neighbouring letters
  (the optimal-string-alignment form of the Damerau-Levenshtein distance). So every known
  column with any one typo is caught, while ``notes``, ``client_name``, ``owner``,
  ``account_manager``, ``region``, ``id`` and the like pass. A header starting with ``x_``
  is always the user's own: that is the way out for a column that merely looks like ours.
* **A name the job's own outputs use** (``RESERVED_COLUMNS``: ``status``, ``action``,
  ``connection_id``, ``row``, ``uri``, ...): results.csv, plan.csv, status.csv and the others
  would hold two columns of one name. Rename it, e.g. ``my_status``.

The custom reports sheet is checked the same way against the report columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.columns import RESERVED_COLUMNS

OWN_PREFIX = "x_"  # a header that starts with this is always the user's own
RENAME_PREFIX = "my_"  # what a reserved name is renamed to
_LONG_NAME = 10  # from this many letters, a name's own forms allow 2 edits
_MIN_PREFIX = 5  # a leading-segments form is at least this long ...
_PREFIX_SHARE = 0.5  # ... and at least this share of the name
_LISTED = 12  # headers named in the error; the rest are counted


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours that turn ``a`` into ``b``
    (optimal string alignment: each letter is edited at most once). With ``limit``, any
    distance above it is returned as ``limit + 1``, found early."""
    over = (max(len(a), len(b)) if limit is None else limit) + 1
    if a == b:
        return 0
    if abs(len(a) - len(b)) >= over:
        return over
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) >= over:
            return over
        before, previous = previous, current
    return min(previous[-1], over)


@cache
def _forms(known: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """(column, form, edits allowed) for every known column: see the module docstring."""
    found: list[tuple[str, str, int]] = []
    for name in known:
        forms = [(name, 2 if len(name) >= _LONG_NAME else 1)]
        segments = name.split("_")
        for end in range(1, len(segments)):
            prefix = "_".join(segments[:end])
            starts = [k for k in known if k == prefix or k.startswith(prefix + "_")]
            if (len(prefix) >= _MIN_PREFIX and len(prefix) >= _PREFIX_SHARE * len(name)
                    and starts == [name]):
                forms.append((prefix, 1))
        forms += [(form.replace("_", ""), allowed) for form, allowed in forms if "_" in form]
        found += [(name, form, allowed) for form, allowed in forms]
    return tuple(found)


def _deletions(text: str, depth: int) -> set[str]:
    """``text`` with up to ``depth`` letters left out, every way."""
    found = frontier = {text}
    for _ in range(depth):
        frontier = {word[:i] + word[i + 1:] for word in frontier for i in range(len(word))}
        found = found | frontier
    return found


@cache
def _index(known: tuple[str, ...]) -> dict[str, list[tuple[str, str, int]]]:
    """Each form's deletion variants -> (column, form, edits allowed).

    Two strings within ``k`` edits share a variant with at most ``k`` letters left out of
    each (a swap of neighbours too: leave one of the two out of both), so a header is compared
    only with the forms it shares a variant with: a sheet of 16,384 columns is checked at once.
    """
    index: dict[str, list[tuple[str, str, int]]] = {}
    for entry in _forms(known):
        for variant in _deletions(entry[1], entry[2]):
            index.setdefault(variant, []).append(entry)
    return index


def resembles(header: str, known: Sequence[str]) -> list[str]:
    """The known columns ``header`` (normalised, not itself known) looks like a misspelling of,
    closest first; empty when it is the user's own column."""
    if header in known or header.startswith(OWN_PREFIX):
        return []
    forms = _forms(tuple(known))
    most = max((allowed for _, _, allowed in forms), default=0)
    longest = max((len(form) for _, form, _ in forms), default=0)
    index = _index(tuple(known))
    best: dict[str, int] = {}
    for spelling in {header, header.replace("_", "")}:
        if len(spelling) > longest + most:
            continue
        candidates = {entry for variant in _deletions(spelling, most)
                      for entry in index.get(variant, ())}
        for name, form, allowed in candidates:
            distance = edit_distance(spelling, form, allowed)
            if distance <= allowed and distance < best.get(name, allowed + 1):
                best[name] = distance
    order = {name: i for i, name in enumerate(known)}
    return sorted(best, key=lambda name: (best[name], order[name]))


def check_headers(label: str, header_row: int, headers: dict[str, str], known: Sequence[str],
                  *, reserved: Iterable[str] = RESERVED_COLUMNS, what: str = "column") -> None:
    """Raise one ``InputError`` naming every header (normalised name -> as written) that is a
    reserved name or resembles a ``known`` column; the others are the user's own."""
    taken = frozenset(reserved)
    problems: list[str] = []
    misspelled: list[str] = []
    for name, written in headers.items():
        if name in known:
            continue
        if name in taken:
            problems.append(f"{written!r} is a name the job's own reports use (results.csv, "
                            f"plan.csv, status.csv ...): rename it, e.g. "
                            f"{RENAME_PREFIX + name!r}")
            continue
        like = resembles(name, known)
        if like:
            misspelled.append(name)
            problems.append(f"{written!r} looks like the {what} "
                            f"{' or '.join(repr(n) for n in like)} misspelled")
    if not problems:
        return
    count = "1 header" if len(problems) == 1 else f"{len(problems)} headers"
    listed = "; ".join(problems[:_LISTED])
    if len(problems) > _LISTED:
        listed += f"; and {len(problems) - _LISTED} more"
    hint = (f". For a misspelling use the known name; if it is a column of your own, prefix "
            f"it {OWN_PREFIX} (e.g. {OWN_PREFIX + misspelled[0]!r}) and it is carried through "
            "unchanged" if misspelled else "")
    raise InputError(f"{count} cannot be used as written: {listed}{hint}",
                     path=label, row=header_row)
