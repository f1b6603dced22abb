"""Issue 14, part 4: the redactor's cost stays n log n in distinct secrets, even when adds and
scrubs interleave, and it masks exactly what it masked before (overlaps as one span)."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import polars as pl
import pytest

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Status
from batch_provisioner.report.results import write_results
from batch_provisioner.report.scrub import scrub_frame
from batch_provisioner.safety import MASK, REDACTOR, Redactor, echo_forms
from batch_provisioner.sandbox import run_in_thread
from batch_provisioner.sheet import secrets as secrets_module
from batch_provisioner.sheet.secrets import SecretContext, parse_ref, register_sheet_secrets
from tests.apply_helpers import csv_rows, load, row_tokens, run_job, write_sheet


def _reference(forms: Iterable[str], text: str) -> str:
    """Brute force: every occurrence of every form, overlapping occurrences joined, each
    joined run replaced by one mask (touching runs stay apart, as the old regex did)."""
    spans = sorted((start, start + len(form)) for form in forms if len(form) >= 4
                   for start in range(len(text)) if text.startswith(form, start))
    out, done, joined = [], 0, []
    for start, end in spans:
        if joined and start < joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    for start, end in joined:
        out += [text[done:start], MASK]
        done = end
    return "".join([*out, text[done:]])


def _all_forms(values: Iterable[str]) -> set[str]:
    return {form for value in values for form in echo_forms(value) if len(form) >= 4}


# --- what is masked ------------------------------------------------------------------------------

@pytest.mark.parametrize(("secrets", "text", "expected"), [
    (["abcdefgh", "cdef"], "<abcdefgh>", f"<{MASK}>"),  # a longer one containing a shorter one
    (["cdef", "abcdefgh"], "<abcdefgh> <cdef>", f"<{MASK}> <{MASK}>"),  # registered the other way
    (["xabcd", "bcdefg"], "<xabcdefg>", f"<{MASK}>"),  # overlapping: masked whole, no tail left
    (["abab"], "<ababab>", f"<{MASK}>"),  # a secret overlapping itself
    (["aaaa", "bbbb"], "aaaabbbb", MASK + MASK),  # touching ones stay two masks
    (["tt-token-1-aaaa", "tt-token-12-bbbb", "tt-token-1"],  # one key, several lengths
     "tt-token-12-bbbb tt-token-1-aaaa tt-token-1-zzzz", f"{MASK} {MASK} {MASK}-zzzz"),
    (["abc", "abcd"], "abc abcd", f"abc {MASK}"),  # under 4 characters: ignored
    (["sec.ret*(x)|[y]^$"], "a sec.ret*(x)|[y]^$ b secXret", f"a {MASK} b secXret"),  # re chars
    (["ŧøķėñ-中-token"], "» ŧøķėñ-中-token «", f"» {MASK} «"),
])
def test_overlapping_and_containing_secrets_are_masked_whole(
        secrets: list[str], text: str, expected: str) -> None:
    redactor = Redactor()
    redactor.add_all(secrets)
    assert redactor.scrub(text) == expected == _reference(_all_forms(secrets), text)


def test_echo_forms_of_a_secret_are_masked_and_the_secret_is_in_the_redactor() -> None:
    redactor = Redactor()
    value = 'tok"en\\with\nbreak-é-4c0d'
    redactor.add(value)
    for form in echo_forms(value):
        assert redactor.scrub(f"[{form}]") == f"[{MASK}]"
        assert form in redactor and f"x{form}x" in redactor
    for ascii_only in (True, False):  # an answer that quotes the request body, as JSON
        body = json.dumps({"auth": {"access_token": value}}, ensure_ascii=ascii_only)
        assert redactor.scrub(body) == f'{{"auth": {{"access_token": "{MASK}"}}}}'
    assert "unrelated text" not in redactor and 42 not in redactor


def test_an_empty_redactor_is_false_and_changes_nothing() -> None:
    redactor = Redactor()
    assert not redactor and redactor.scrub("any text") == "any text"
    redactor.add("abc")  # too short: still empty
    assert not redactor
    redactor.add("abcd")
    assert redactor and redactor.scrub("abcd") == MASK
    redactor.clear()
    assert not redactor and redactor.scrub("abcd") == "abcd" and "abcd" not in redactor


def test_scrub_value_masks_inside_json_like_values() -> None:
    redactor = Redactor()
    redactor.add("value-token-91e2")
    assert redactor.scrub_value({"a": ["x value-token-91e2 y", 3], "access_token": "other",
                                 "b": ("value-token-91e2",), "c": None}) == {
        "a": [f"x {MASK} y", 3], "access_token": MASK, "b": [MASK], "c": None}


def test_randomised_against_brute_force_with_interleaved_adds_and_scrubs() -> None:
    rng = random.Random(14)
    alphabet = "ab-c\n\"é"  # small: many shared keys, overlaps and containments
    redactor, added = Redactor(), []
    for step in range(400):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12)))
        redactor.add(value)
        added.append(value)
        pieces = [rng.choice(added) if rng.random() < 0.5 else
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                  for _ in range(rng.randint(1, 8))]
        text = "".join(pieces)
        forms = _all_forms(added)
        scrubbed = redactor.scrub(text)
        assert scrubbed == _reference(forms, text), (step, text)
        assert not any(form in scrubbed for form in forms if "*" not in form)
        assert (text in redactor) == (scrubbed != text)


def test_every_secret_added_so_far_is_masked_at_every_step_of_an_interleaved_run() -> None:
    redactor = Redactor()
    tokens = [f"{random.Random(i).getrandbits(160):040x}" for i in range(600)]
    for i, token in enumerate(tokens):
        redactor.add(token)
        earlier = tokens[i * 7 % (i + 1)]
        assert redactor.scrub(f"a {token} b {earlier} c") == f"a {MASK} b {MASK} c"
        if i + 1 < len(tokens):
            assert tokens[i + 1] not in redactor
    assert redactor.compilations > 10  # the chunks were merged along the way, and still right
    assert all(redactor.scrub(token) == MASK for token in tokens)


# --- scoped and threads --------------------------------------------------------------------------

def test_scoped_forgets_what_was_added_inside_even_after_compiling_it() -> None:
    redactor = Redactor()
    outer = [f"outer-token-{i:03d}-7f" for i in range(40)] + ["zq-outer-secret"]
    redactor.add_all(outer)
    assert redactor.scrub(outer[0]) == MASK  # compiled before the block
    inner = [f"{i:03d}-inner-token" for i in range(100)] + ["outer-token-000-7f-and-more"]
    with redactor.scoped() as same:
        assert same is redactor
        redactor.add_all(inner)
        assert all(redactor.scrub(v) == MASK for v in inner + outer)
    assert all(redactor.scrub(v) == MASK for v in outer)
    assert [v for v in inner if redactor.scrub(v) == MASK] == []
    assert redactor.scrub("outer-token-000-7f-and-more") == f"{MASK}-and-more"
    redactor.add("017-inner-token")  # the same value again after the block: registered again
    assert redactor.scrub("017-inner-token") == MASK


def test_scrubs_in_threads_while_the_loop_adds_see_every_earlier_secret() -> None:
    redactor = Redactor()
    early = [f"early-{random.Random(i).getrandbits(64):016x}" for i in range(50)]
    redactor.add_all(early)
    text = " | ".join(early)
    errors: list[BaseException] = []
    leaks: list[str] = []
    stop = threading.Event()

    def scrub_forever() -> None:
        try:
            while not stop.is_set():
                out = redactor.scrub(text)
                leaks.extend(v for v in early if v in out)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrub_forever) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(3_000):
            redactor.add(f"{random.Random(-i).getrandbits(128):032x}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == [] and leaks == []
    assert redactor.scrub(text) == " | ".join([MASK] * len(early))


# --- the cost: counted compilations, not timings -------------------------------------------------

def _counting_compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes (pattern lengths) of every ``re.compile`` call from now on."""
    calls: list[int] = []
    real: Callable[..., re.Pattern[str]] = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        calls.append(len(pattern))
        return real(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)
    return calls


@pytest.mark.parametrize("n", [256, 2048])
def test_interleaved_adds_and_scrubs_compile_n_log_n_keys_in_total(
        n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [f"{random.Random(n + i).getrandbits(160):040x}" for i in range(n)]
    redactor = Redactor()
    calls = _counting_compiles(monkeypatch)
    for token in tokens:
        redactor.add(token)
        assert redactor.scrub(f"Field 'access_token' has invalid value '{token}'") == (
            f"Field 'access_token' has invalid value '{MASK}'")
    assert redactor.compilations == len(calls)
    # each key is compiled again only when its chunk at least 1.5-folds: O(log n) times
    assert redactor.compiled_keys <= n * (math.log(n, 1.5) + 1)
    assert redactor.compilations <= n // 4  # a compilation per 16 new keys, plus the merges
    # the old redactor compiled every secret again at each new one: n (n + 1) / 2 of them
    assert redactor.compiled_keys < n * (n + 1) / 2 / 10


def test_a_sheet_of_secrets_added_at_once_compiles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor()
    calls = _counting_compiles(monkeypatch)
    redactor.add_all(f"{random.Random(i).getrandbits(160):040x}" for i in range(5_000))
    assert calls == []  # nothing is compiled before something is scrubbed
    for _ in range(100):
        redactor.scrub("a log line with nothing secret in it")
    assert len(calls) == 1 and redactor.compiled_keys == 5_000


def test_secrets_that_share_a_key_compile_nothing_new(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor()
    calls = _counting_compiles(monkeypatch)
    for i in range(2_000):  # agency-style tokens: one shared beginning, then the client's part
        token = f"tt-token-{i}-{random.Random(i).getrandbits(64):016x}"
        redactor.add(token)
        assert redactor.scrub(f"<{token}>") == f"<{MASK}>"
    assert calls == []  # one key ("tt-tok"), looked for with str.find


# --- a sheet where every row brings its own token ------------------------------------------------

class _Recording(httpx.AsyncBaseTransport):
    """The real transport, remembering the access token of every create it sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            auth = json.loads(request.content).get("auth") or {}
            self.sent += [auth["access_token"]] if "access_token" in auth else []
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_run_over_a_sheet_of_distinct_tokens_creates_every_row_and_leaks_none(
        tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 60, connect_card_every=7, distinct_secrets=True)
    tokens = row_tokens(sheet)
    assert len(tokens) == len(set(tokens)) == 60 - 9  # one per row, connect-card rows have none
    rows = csv_rows(sheet)
    rows[3]["client_ref"] = f"pasted {tokens[40]} by mistake"  # another row's token in a cell
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    recording, run_dir = _Recording(), tmp_path / "run"
    with REDACTOR.scoped(), run_in_thread(profile="fast") as sandbox:
        prepared = load(sheet)
        result = run_job(prepared, sandbox.url, run_dir, transport=recording)
        write_results(run_dir, prepared, result.outcomes, result.summary, result.timeline)
    assert [o.status for o in result.outcomes] == [Status.CREATED] * 60
    assert result.exit_code is ExitCode.OK
    assert sorted(recording.sent) == sorted(tokens)  # each row sent its own token
    outputs = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in outputs} >= {"results.csv", "results.parquet", "failed_rows.csv",
                                          "summary.json", "report.html", "journal.jsonl"}
    for path in outputs:
        data = path.read_bytes()
        assert [t for t in tokens if t.encode() in data] == [], path
    [pasted] = [r for r in csv_rows(run_dir / "results.csv") if r["client_ref"].startswith("pa")]
    assert pasted["client_ref"] == f"pasted {MASK} by mistake"


def test_scrub_frame_scrubs_the_cells_that_hold_a_secret_and_compiles_nothing_for_a_clean_one(
        ) -> None:
    tokens = [f"{random.Random(-i).getrandbits(160):040x}" for i in range(40)]
    frame = pl.DataFrame({
        "row": list(range(6)),
        "note": ["clean", None, f"has {tokens[3]} in it", "", f"{tokens[0]}{tokens[1]}", "x"],
        "other": [None, tokens[39], "a", "b", "c", f"end {tokens[7]}"],
    })
    with REDACTOR.scoped():
        REDACTOR.add_all(tokens)
        before = REDACTOR.compilations
        clean = frame.with_columns(pl.col("note").str.replace_all("[0-9a-f]{40}", "-"),
                                   pl.col("other").str.replace_all("[0-9a-f]{40}", "-"))
        assert scrub_frame(clean).equals(clean)
        assert REDACTOR.compilations == before  # no cell could hold a key: nothing compiled
        scrubbed = scrub_frame(frame)
        expected = frame.with_columns(pl.col(c).map_elements(REDACTOR.scrub, return_dtype=pl.String)
                                      for c in ("note", "other"))
    assert scrubbed.equals(expected)
    assert scrubbed.get_column("note").to_list() == [
        "clean", None, f"has {MASK} in it", "", MASK + MASK, "x"]
    assert scrubbed.get_column("other").to_list() == [None, MASK, "a", "b", "c", f"end {MASK}"]


# --- a secret file per row: the quick read agrees with the careful one ---------------------------

def _secret_files(tmp_path: Path) -> tuple[Path, list[str]]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "ok.txt").write_text("tok-value-0123\n", encoding="utf-8")
    (root / "sub" / "deep.txt").write_text("  deep-token-4567  ", encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_text(" \n\t\n", encoding="utf-8")
    (root / "latin1.txt").write_bytes(b"caf\xe9-token")
    with (root / "big.txt").open("wb") as handle:
        handle.truncate(100 * 1024)
    (outside / "secret.txt").write_text("outside-token-89ab", encoding="utf-8")
    (root / "link_in.txt").symlink_to(root / "ok.txt")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "fifo")
    targets = ["ok.txt", "./ok.txt", "sub/../ok.txt", "sub/deep.txt", str(root / "ok.txt"),
               "empty.txt", "blank.txt", "latin1.txt", "big.txt", "link_in.txt",
               "link_out.txt", "linkdir/secret.txt", "../outside/secret.txt", "fifo", "sub",
               "sub/", "missing.txt", "sub/missing.txt", "~/no-such-file", "a\x00b", "."]
    return root, targets


def test_the_quick_read_of_a_secret_file_finds_what_the_careful_one_finds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, targets = _secret_files(tmp_path)
    ctx = SecretContext(env={}, base_dir=root)
    quick = {t: secrets_module._lookup(parse_ref(f"file:{t}"), ctx, secrets_module._Pass.of(ctx))
             for t in targets}
    monkeypatch.setattr(secrets_module, "_plain_file_value", lambda *_args: "")
    careful = {t: secrets_module._lookup(parse_ref(f"file:{t}"), ctx,
                                         secrets_module._Pass.of(ctx)) for t in targets}
    assert quick == careful
    assert quick["ok.txt"] == quick["link_in.txt"] == (None, "tok-value-0123")
    assert quick["sub/deep.txt"] == (None, "deep-token-4567")
    assert all(quick[t][0] for t in ("link_out.txt", "linkdir/secret.txt", "fifo", "big.txt"))
    assert "outside" in (quick["link_out.txt"][0] or "")


def test_a_sheet_of_secret_files_registers_each_once_and_reports_the_bad_ones(
        tmp_path: Path) -> None:
    root, targets = _secret_files(tmp_path)
    ctx = SecretContext(env={"TOK": "env-token-cdef"}, base_dir=root)
    cells = [f"file:{t}" for t in targets] * 2 + ["env:TOK", "literal-token-7777"]
    with REDACTOR.scoped():
        found = register_sheet_secrets(cells, ctx)
        known = [v for v in ("tok-value-0123", "deep-token-4567", "env-token-cdef",
                             "literal-token-7777", "outside-token-89ab") if v in REDACTOR]
    assert known == ["tok-value-0123", "deep-token-4567", "env-token-cdef", "literal-token-7777"]
    assert found.literals == ["literal-token-7777"]
    assert set(found.problems) == {f"file:{t}" for t in targets if t not in (
        "ok.txt", "./ok.txt", "sub/../ok.txt", "sub/deep.txt", str(root / "ok.txt"),
        "link_in.txt")}
    assert all("outside-token" not in problem for problem in found.problems.values())
