"""Column guardrails: headers that would silently do the wrong thing are input errors.

A header the job does not know is the user's own column and rides along to every output,
unless it is one of these (each an ``InputError``, exit 2, before anything is sent; every such
header of a file is named in one error). Headers are compared after normalising (case, spaces,
dashes: ``normalise_header``); a header starting with ``x_`` is always the user's own: that is
the way out for a column that merely looks like ours.

* **A misspelling of a known column.** A header *resembles* a known column when it is within
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
  ``account_manager``, ``region``, ``id`` and the like pass.
* **A known column written another way.** Three rules, each a dictionary look-up:

  - *another name*: the header is one of the column's ``SYNONYMS`` (``frequency`` and
    ``sync_interval`` for sync_frequency, ``advertiser_ids`` for accounts, ...; also without
    underscores). This one decides alone: ``destination_schema`` is schema, not
    destination_schema_names;
  - *a unit added*: the header is a column's name, a leading-segments form (as above) or a
    synonym, then ``_`` and one of ``UNIT_WORDS`` (``_minutes``, ``_mins``, ``_days``,
    ``_hours``, ``_id(s)``, ``_value``, ``_name``, ...): ``sync_frequency_minutes``,
    ``attribution_window_days``, ``schema_name``;
  - *shortened*: the header is the start of exactly one known name (with or without
    underscores), at least 4 letters and at least 60% of it: ``sync_freq``, ``syncfreq``,
    ``timeframe_mo``. ``client`` starts two names and passes.
* **A secret in a column of its own** (``looks_secret``): its value would be copied in clear
  into results.csv and report.html. A header one of whose words (split on ``_``) is or ends
  with a ``SECRET_WORDS`` word (``token``, ``secret``, ``password``, ``passwd``, ``apikey``,
  ``credential(s)`` ...: ``tiktok_token``, ``auth_token``, ``app_secret``, ``authtoken``) or
  is ``bearer`` or ``pwd``, or that has ``key`` right after ``api``, ``access``, ``private``,
  ``secret`` or ``auth`` (``api_key``, ``access_key``, ``private_key``). A secret goes in
  access_token (or client_id/client_secret) as env:NAME or file:PATH. A header that resembles
  a known column is reported as that (``client_secret_value``: the column client_secret, a
  secret).
* **A name the job's own outputs use** (``RESERVED_COLUMNS``: ``status``, ``action``,
  ``row``, ``uri``, ...): results.csv, plan.csv, status.csv and the others would hold two
  columns of one name. Except the two ``export`` writes (``EXPORT_COLUMNS``:
  ``connection_id``, ``setup_state``), which the job reads itself and never carries
  through. Rename it, e.g. ``my_status``; when the name also resembles a known column
  (``setup_tests``: run_setup_tests), the error says that instead.

``error`` and ``source_row`` are not checked: failed_rows.csv adds them, so the reader drops
them (``Table.ignored``) and the carry notice names them once ("ignored: ... e.g. x_error").

The custom reports sheet is checked the same way against the report columns. The cost is
linear in the headers: the rules past the edit check are a few dictionary look-ups per header,
and a header row of 16,384 columns takes a second or two, most of it the edit check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import pairwise

from batch_provisioner.errors import InputError
from batch_provisioner.sheet.columns import REFUSED_HEADERS, SECRET_COLUMNS

OWN_PREFIX = "x_"  # a header that starts with this is always the user's own
RENAME_PREFIX = "my_"  # what a reserved name is renamed to
_LONG_NAME = 10  # from this many letters, a name's own forms allow 2 edits
_MIN_PREFIX = 5  # a leading-segments form is at least this long ...
_PREFIX_SHARE = 0.5  # ... and at least this share of the name
_LISTED = 12  # headers named in the error; the rest are counted
_MIN_SHORTENED = 4  # a shortened name keeps at least this many letters ...
_SHORTENED_SHARE = 0.6  # ... and at least this share of the name

#: Other names people give a known column (normalised; also matched without underscores).
#: A header that is one of them is refused naming the column. Keep each word form one that
#: means the column in this job and hardly anything else: ``advertiser`` alone stays the
#: user's own, ``advertiser_ids`` is accounts.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "group_id": ("destination_group_id", "destination_id", "dest_group_id",
                 "fivetran_group_id"),
    "group_name": ("destination_group_name", "dest_group_name"),
    "trust_certificates": ("trust_cert", "trust_certs", "trust_certificate"),
    "run_setup_tests": ("run_tests", "run_test", "setup_tests", "setup_test"),
    "paused": ("is_paused", "start_paused", "create_paused"),
    "sync_frequency": ("frequency", "sync_interval", "sync_every", "sync_minutes"),
    "daily_sync_time": ("sync_time", "sync_hour", "daily_sync_hour", "daily_sync_at"),
    "timeframe_months": ("history_months", "lookback_months", "sync_history", "timeframe_mo"),
    "accounts": ("advertiser_ids", "advertiser_id", "advertisers", "advertiser_accounts",
                 "account_ids", "account_id", "account_list"),
    "attribution_window_size": ("attribution", "attribution_window", "attribution_days"),
    "redirect_uri": ("return_url", "return_uri", "callback_url", "callback_uri", "redirect"),
    "schema": ("schema_name", "destination_schema"),
    # the custom reports sheet
    "aggregate": ("aggregation", "time_aggregation"),
    "metrics": ("metric",),
    "dimensions": ("dimension",),
    "report_type": ("report",),
    "table_name": ("table", "destination_table"),
}
#: Words that follow a column's name without changing what it holds.
UNIT_WORDS: frozenset[str] = frozenset({
    "minutes", "minute", "mins", "min", "hours", "hour", "hrs", "days", "day", "months",
    "month", "id", "ids", "value", "values", "name", "names", "list", "flag"})
#: A header with one of these as a word, or a word ending with one, names a secret.
SECRET_WORDS: tuple[str, ...] = (
    "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "passphrase",
    "apikey", "apikeys", "accesskey", "privatekey", "secretkey", "credential", "credentials")
#: Whole words only (``pallbearer`` is not ``bearer``).
_SECRET_EXACT: frozenset[str] = frozenset({"bearer", "pwd"})
#: ``<word>_key`` names a secret after these words.
_KEY_AFTER: frozenset[str] = frozenset({"api", "access", "private", "secret", "auth"})
ELSEWHERE_HINT = (  # what to do with a secret-looking header
    "looks like a secret: put it in access_token (or client_id/client_secret) as "
    "env:NAME or file:PATH; if it is not a secret, prefix the header x_")


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


@cache
def _written_forms(known: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str],
                                                     dict[str, str]]:
    """Look-up tables for a known column written another way (module docstring): synonym ->
    column, what a unit word may follow -> column, shortened name -> column."""
    synonyms: dict[str, str] = {}
    for name, words in SYNONYMS.items():
        if name in known:
            for word in words:
                synonyms.setdefault(word, name)
                synonyms.setdefault(word.replace("_", ""), name)
    stems = {form: name for name, form, _ in _forms(known)}
    for word, name in synonyms.items():
        stems.setdefault(word, name)
    shortened: dict[str, str] = {}
    spellings = [(name, spelling) for name in known
                 for spelling in dict.fromkeys((name, name.replace("_", "")))]
    owners: dict[str, set[str]] = {}
    for name, spelling in spellings:
        for end in range(1, len(spelling)):
            owners.setdefault(spelling[:end], set()).add(name)
    for name, spelling in spellings:
        first = max(_MIN_SHORTENED, math.ceil(_SHORTENED_SHARE * len(spelling)))
        for end in range(first, len(spelling)):
            prefix = spelling[:end]
            if owners[prefix] == {name} and prefix not in known:
                shortened[prefix] = name
    return synonyms, stems, shortened


def _written_another_way(header: str, known: tuple[str, ...]) -> tuple[list[str], bool]:
    """The columns ``header`` is written another way of, and whether a synonym decided it."""
    synonyms, stems, shortened = _written_forms(known)
    bare = header.replace("_", "")
    for spelling in (header, bare):
        if spelling in synonyms:
            return [synonyms[spelling]], True
    found: list[str] = []
    head, _, last = header.rpartition("_")
    if last in UNIT_WORDS and head in stems:
        found.append(stems[head])
    for unit in UNIT_WORDS:
        if bare.endswith(unit) and bare[:-len(unit)] in stems:
            found.append(stems[bare[:-len(unit)]])
    found += [shortened[spelling] for spelling in (header, bare) if spelling in shortened]
    return list(dict.fromkeys(found)), False


def resembles(header: str, known: Sequence[str]) -> list[str]:
    """The known columns ``header`` (normalised, not itself known) looks like a misspelling of
    or another way of writing, closest first; empty when it is the user's own column."""
    return _resemblance(header, tuple(known))[0]


def _resemblance(header: str, known: tuple[str, ...]) -> tuple[list[str], bool]:
    """``resembles``, and whether one of them is a misspelling (within edits of a form)."""
    if header in known or header.startswith(OWN_PREFIX):
        return [], False
    written, decided = _written_another_way(header, known)
    if decided:
        return written, False
    forms = _forms(known)
    most = max((allowed for _, _, allowed in forms), default=0)
    longest = max((len(form) for _, form, _ in forms), default=0)
    index = _index(known)
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
    typo = bool(best)
    best.update(dict.fromkeys(written, 0))
    order = {name: i for i, name in enumerate(known)}
    return sorted(best, key=lambda name: (best[name], order[name])), typo


def looks_secret(header: str) -> bool:
    """Whether ``header`` (normalised) names a secret (module docstring); ``x_...`` never."""
    if header.startswith(OWN_PREFIX):
        return False
    words = header.split("_")
    if any(word in _SECRET_EXACT or word.endswith(SECRET_WORDS) for word in words):
        return True
    return any(word in ("key", "keys") and before in _KEY_AFTER
               for before, word in pairwise(words))


def check_headers(label: str, header_row: int, headers: dict[str, str], known: Sequence[str],
                  *, reserved: Iterable[str] = REFUSED_HEADERS, what: str = "column") -> None:
    """Raise one ``InputError`` naming every header (normalised name -> as written) that is a
    reserved name, resembles a ``known`` column or looks like a secret; the others are the
    user's own."""
    taken = frozenset(reserved)
    columns = tuple(known)
    problems: list[str] = []
    misspelled: list[str] = []
    for name, written in headers.items():
        if name in columns:
            continue
        like, typo = _resemblance(name, columns)
        shown = " or ".join(repr(n) for n in like)
        if name in taken and like:
            misspelled.append(name)
            problems.append(f"{written!r}: did you mean {shown}? ({name!r} is a column the "
                            "job's own reports use)")
        elif name in taken:
            problems.append(f"{written!r} is a name the job's own reports use (results.csv, "
                            f"plan.csv, status.csv ...): rename it, e.g. "
                            f"{RENAME_PREFIX + name!r}")
        elif like:
            misspelled.append(name)
            how = "misspelled" if typo else "written another way"
            secret = (" (a secret: give it as env:NAME or file:PATH)"
                      if like[0] in SECRET_COLUMNS else "")
            problems.append(f"{written!r} looks like the {what} {shown} {how}{secret}")
        elif looks_secret(name):
            problems.append(f"{written!r} {ELSEWHERE_HINT}")
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
