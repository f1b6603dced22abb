"""Issue 13, hardening: bounded input (zip bombs, rows past Excel's limit), listings that never
end, reports that survive a kill, outputs that cannot be written, and bugs that stop the run.

One named regression test per defect; the input files themselves are corpus cases
(``tests/data/hostile/``: ``zip_bomb.xlsx``, ``zip_ratio_bomb.xlsx``, ``zip_directory_lies.xlsx``,
``rows_over_limit.*``).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import structlog

import batch_provisioner as bp
from batch_provisioner import cli, errors as errors_module, logs
from batch_provisioner.api import client as client_module
from batch_provisioner.api.client import FivetranClient
from batch_provisioner.errors import ExitCode, FatalApiError, InputError, OutputError
from batch_provisioner.models import Status
from batch_provisioner.report.files import write_result_files
from batch_provisioner.run import journal as journal_module, runner as runner_module
from batch_provisioner.run.journal import Journal, load
from batch_provisioner.sandbox import SandboxHandle, run_in_thread
from batch_provisioner.settings import ApiCredentials, ClientSettings, RetryPolicy
from batch_provisioner.sheet import common, csv_file, read, xlsx, zip_limits
from batch_provisioner.sheet.read import read_table
from tests.apply_helpers import (
    ENV,
    TOKEN,
    creations,
    csv_rows,
    load as load_sheet,
    run_job,
    write_sheet,
)

CORPUS = Path(__file__).parent / "data" / "hostile"
README = Path(__file__).resolve().parents[1] / "README.md"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture()
def box() -> Iterator[SandboxHandle]:
    with run_in_thread(profile="fast") as handle:
        yield handle


def main(*args: str | Path) -> int:
    """The CLI in this process (so a test can break one of its parts); its exit code."""
    try:
        with pytest.raises(SystemExit) as done:
            cli.main([str(a) for a in args])
    finally:
        logs.close_run_log()
        structlog.reset_defaults()  # the CLI logged to this test's captured stderr
    code = done.value.code
    return int(code) if isinstance(code, int) else 0


# --- item 7: what an input file may inflate to, and how many rows it may hold -------------


def _built(name: str, folder: Path) -> Path:
    """A corpus case that make_corpus.py builds at test time (too big to commit)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return Path(builder.generate(name, folder))


def test_regression_zip_bomb_is_refused_from_the_zip_directory_before_fastexcel_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastexcel

    bomb = _built("zip_bomb.xlsx", tmp_path)
    assert bomb.stat().st_size < 1_000_000  # 273 MB of sheet XML

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("fastexcel opened the zip bomb")

    monkeypatch.setattr(fastexcel, "read_excel", never)
    for reader in (read_table, xlsx.sheet_names):
        with pytest.raises(InputError, match="a workbook may unzip to at most 256 MB"):
            reader(bomb)


def test_regression_a_zip_directory_that_understates_sizes_is_caught_by_inflating_for_real(
        ) -> None:
    with pytest.raises(InputError, match="but the ZIP directory says 100"):
        read_table(CORPUS / "zip_directory_lies.xlsx")


def test_regression_a_member_that_inflates_past_the_ratio_is_refused() -> None:
    with pytest.raises(InputError, match=r"inflates 382:1 \(at most 200:1"):
        read_table(CORPUS / "zip_ratio_bomb.xlsx")


def test_regression_real_workbooks_pass_the_zip_limits(tmp_path: Path) -> None:
    """The templates, and a polars workbook whose hyperlink relations inflate about 60:1."""
    bp.write_templates(tmp_path)
    zip_limits.check_inflation(tmp_path / "advertiser_groups.xlsx")
    links = tmp_path / "links.xlsx"
    pl.DataFrame({"group_id": ["decent_dropsy"] * 30_000,
                  "redirect_uri": [f"https://agency.example/{i}" for i in range(30_000)]}
                 ).write_excel(links)
    zip_limits.check_inflation(links)
    assert read_table(links).frame.height == 30_000


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_regression_rows_past_the_cap_are_refused_in_every_format_naming_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    cap = 20  # the real cap is 1,048,576: the corpus's rows_over_limit.* cases use it
    for module in (common, read, csv_file, xlsx):
        monkeypatch.setattr(module, "MAX_ROWS", cap)
    for data_rows, ok in ((cap - 1, True), (cap, False), (cap * 50, False)):
        frame = pl.DataFrame({"group_id": ["decent_dropsy"] * data_rows,
                              "schema": [f"tiktok_{i}" for i in range(data_rows)]})
        path = tmp_path / f"rows_{data_rows}.{fmt}"
        {"csv": frame.write_csv, "parquet": frame.write_parquet,
         "xlsx": frame.write_excel}[fmt](path)
        if ok:
            assert read_table(path).frame.height == data_rows
            continue
        with pytest.raises(InputError, match=f"has more than {cap} rows; a sheet has at most "
                                             f"{cap} .Excel's limit"):
            read_table(path)


def test_regression_the_row_cap_is_excels_and_stays_above_the_1m_row_benchmark() -> None:
    assert common.MAX_ROWS == 1_048_576
    assert common.MAX_ROWS - 1 >= 1_000_000  # tests/benchmarks/input_scale.py: 1M data rows


# --- item 9: a listing that never ends ---------------------------------------------------


def _endless(calls: list[str]) -> httpx.MockTransport:
    """A server whose every listing page names a new next cursor."""
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        body = {"code": "Success", "data": {"items": [],
                                           "next_cursor": f"c{len(calls)}"}}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


@pytest.mark.anyio
async def test_regression_a_listing_that_always_answers_a_new_cursor_is_fatal_after_max_pages(
        ) -> None:
    assert client_module.MAX_PAGES * 1000 >= 1_000_000  # enough for a million connections
    calls: list[str] = []
    settings = ClientSettings(retry=RetryPolicy(max_attempts=1))
    async with FivetranClient(ApiCredentials("k", "s", "https://api.example.test"), settings,
                              transport=_endless(calls)) as client:
        with pytest.raises(FatalApiError) as caught:
            await client.list_connections("grp_1")
    assert len(calls) == client_module.MAX_PAGES
    assert caught.value.path == "/v1/groups/grp_1/connections"
    assert (f"GET /v1/groups/grp_1/connections: the listing did not end after "
            f"{client_module.MAX_PAGES} pages") in caught.value.message
    assert caught.value.exit_code == ExitCode.FATAL_API


def test_regression_an_apply_whose_listing_never_ends_stops_with_exit_3_naming_the_endpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", 7)
    calls: list[str] = []
    prepared = load_sheet(write_sheet(tmp_path / "in.csv", 4, groups=("decent_dropsy",)))
    result = run_job(prepared, "https://api.example.test", tmp_path / "reports" / "r1",
                     adopt=False, transport=_endless(calls))
    assert result.exit_code == ExitCode.FATAL_API
    assert len(calls) == 7
    assert {o.status for o in result.outcomes} == {Status.NOT_ATTEMPTED}
    message = result.outcomes[0].error_message or ""
    assert "GET /v1/groups/decent_dropsy/connections" in message and "7 pages" in message


# --- item 10: every output atomic; lifecycle commands rebuild from the journal -------------


def _results(frame_rows: int) -> pl.DataFrame:
    return pl.DataFrame({"source_row": list(range(2, 2 + frame_rows)),
                         "group_id": ["g"] * frame_rows, "schema": ["s"] * frame_rows,
                         "status": ["created"] * frame_rows})


def test_regression_a_crash_while_results_parquet_is_written_leaves_the_old_file_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_result_files(tmp_path, _results(3), {"run_id": "r"}, [], [])

    def dies_half_way(self: pl.DataFrame, path: Path, **_k: object) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt  # the nearest a test gets to a kill -9 mid-write

    monkeypatch.setattr(pl.DataFrame, "write_parquet", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_result_files(tmp_path, _results(5), {"run_id": "r"}, [], [])
    assert pl.read_parquet(tmp_path / "results.parquet").height == 3
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _apply_on_sandbox(tmp_path: Path, rows: int = 5, **options: Any) -> tuple[Path, Path]:
    sheet = write_sheet(tmp_path / "in.csv", rows, connect_card_every=3,
                        groups=("decent_dropsy",))
    reports = tmp_path / "reports"
    result = bp.apply(load_sheet(sheet), sandbox=True, reports_dir=reports, run_id="r1",
                      input_paths=(sheet,), **options)
    assert result.exit_code == ExitCode.OK
    return sheet, reports / "r1"


def test_regression_status_connect_cards_and_rollback_run_on_a_zero_byte_results_parquet(
        tmp_path: Path, env: None) -> None:
    _sheet, run_dir = _apply_on_sandbox(tmp_path)
    reports = run_dir.parent
    before = pl.read_parquet(run_dir / "results.parquet")
    (run_dir / "results.parquet").write_bytes(b"")  # what a kill -9 mid-write used to leave
    (run_dir / "summary.json").write_text("{half", "utf-8")
    status = bp.status("r1", reports_dir=reports, sandbox=True)
    assert status.exit_code == ExitCode.OK and len(status.lines) == 5
    rebuilt = pl.read_parquet(run_dir / "results.parquet")
    assert rebuilt.select("source_row", "schema", "status", "connection_id", "client_ref"
                          ).equals(before.select("source_row", "schema", "status",
                                                 "connection_id", "client_ref"))
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert summary["counts"]["created"] == 5 and summary["carry_columns"] == ["client_ref"]
    (run_dir / "results.parquet").write_bytes(b"PAR1 not really")
    cards = bp.connect_cards("r1", reports_dir=reports, sandbox=True)
    assert cards.exit_code == ExitCode.OK
    (run_dir / "results.parquet").unlink()
    rolled = bp.rollback("r1", reports_dir=reports, sandbox=True)
    assert rolled.exit_code == ExitCode.OK and rolled.deleted_now == 5
    assert set(pl.read_parquet(run_dir / "results.parquet")["status"]) == {"rolled_back"}


def test_regression_results_are_rebuilt_from_the_journal_alone_when_the_input_is_gone(
        tmp_path: Path, env: None) -> None:
    sheet, run_dir = _apply_on_sandbox(tmp_path)
    sheet.unlink()  # no input to take the rows and the user's columns from
    (run_dir / "results.parquet").unlink()
    status = bp.status("r1", reports_dir=run_dir.parent, sandbox=True)
    assert status.exit_code == ExitCode.OK and len(status.lines) == 5
    rebuilt = pl.read_parquet(run_dir / "results.parquet")
    assert rebuilt["source_row"].to_list() == [2, 3, 4, 5, 6]
    assert set(rebuilt["status"]) == {"created"} and rebuilt["connection_id"].n_unique() == 5
    rolled = bp.rollback("r1", reports_dir=run_dir.parent, sandbox=True)
    assert rolled.deleted_now == 5


def test_regression_every_output_file_is_written_by_the_one_atomic_writer(
        tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file any command leaves is renamed into place after an fsync, except the
    append-only records (journal, run log) and the locks; the sandbox keeps its own state."""
    replaced: set[Path] = set()
    synced: set[Path] = set()
    real_replace, real_fsync = os.replace, os.fsync
    opened: dict[int, Path] = {}
    real_open = os.open

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = Path(path).resolve()
        return fd

    def spy_fsync(fd: int) -> None:
        if fd in opened:
            synced.add(opened[fd])
        real_fsync(fd)

    def spy_replace(source: Any, target: Any) -> None:
        assert Path(source).resolve() in synced, f"{source} renamed before its fsync"
        replaced.add(Path(target).resolve())
        real_replace(source, target)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.chdir(tmp_path)
    sheet = write_sheet(tmp_path / "in.csv", 4, connect_card_every=3, groups=("decent_dropsy",))
    steps = [("validate", sheet, "--run-id", "v1"), ("plan", sheet, "--sandbox", "--run-id", "p1"),
             ("apply", sheet, "--sandbox", "--run-id", "r1", "--yes"),
             ("status", "r1", "--sandbox"), ("connect-cards", "r1", "--sandbox"),
             ("rollback", "r1", "--yes", "--sandbox"),
             ("render", sheet, "--out", "out/payloads.jsonl"), ("template", "--out", "tpl"),
             ("groups", "--sandbox", "--out", "out/groups.csv")]
    for step in steps:
        assert main(*step) in (0, 5), step
    appended = {"journal.jsonl", "run.log.jsonl", "lock"}
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()
               and p.name not in appended and "sandbox" not in p.parts and p != sheet}
    assert written and not written - replaced, sorted(map(str, written - replaced))
    assert {"results.parquet", "summary.json", "plan.csv", "validation.csv", "status.csv",
            "connect_cards.csv", "failed_rows.csv", "timeline.json", "payloads.jsonl",
            "groups.csv", "defaults.toml"} <= {p.name for p in written}


# --- item 11: an output that cannot be written --------------------------------------------


def test_regression_a_full_disk_while_reports_are_written_exits_4_naming_the_path(
        tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 4, groups=("decent_dropsy",))
    reports = tmp_path / "reports"

    def full(self: pl.DataFrame, path: Path, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_parquet", full)
        code = main("apply", sheet, "--sandbox", "--reports-dir", reports, "--run-id", "r1",
                    "--yes")
    err = capsys.readouterr().err
    assert code == ExitCode.INTERRUPTED, err
    assert (f"error: cannot write {reports / 'r1' / 'results.parquet'}: No space left on "
            "device (errno 28)") in err
    assert "internal error" not in err
    state = load(reports / "r1")  # the journal is whole: every outcome is in it
    assert {o.status for o in state.outcomes.values()} == {Status.CREATED}
    assert len(state.outcomes) == 4 and not state.started and not state.torn_lines
    assert main("status", "r1", "--sandbox", "--reports-dir", reports) == ExitCode.OK
    assert pl.read_parquet(reports / "r1" / "results.parquet").height == 4


def test_regression_a_full_disk_before_anything_is_sent_exits_2_and_sends_nothing(
        tmp_path: Path, env: None, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 3)

    def full(_fd: int) -> None:
        raise ENOSPC

    monkeypatch.setattr(journal_module.os, "fsync", full)
    code = main("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
                "--run-id", "r1")
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == ExitCode.INPUT_ERROR, err
    assert f"error: cannot write {tmp_path / 'r' / 'r1' / 'journal.jsonl'}: No space" in err
    assert box.ledger()["counts"]["requests"] == 0


class _FillingFile:
    """A journal handle on a disk that fills up after ``room`` more characters."""

    def __init__(self, handle: Any, room: int) -> None:
        self._handle, self.room = handle, room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self._handle.write(text[:self.room])  # the torn line a full disk leaves
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(text)
        return int(self._handle.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_regression_a_journal_write_failure_mid_run_stops_sending_and_every_send_is_durable(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = load_sheet(write_sheet(tmp_path / "in.csv", 60))
    run_dir = tmp_path / "reports" / "r1"
    real_init = Journal.__init__

    def filling(self: Journal, folder: Path) -> None:
        real_init(self, folder)
        self._handle = _FillingFile(self._handle, 9_000)  # type: ignore[assignment]

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "__init__", filling)
        with pytest.raises(OutputError) as caught:
            run_job(prepared, box.url, run_dir)
    assert caught.value.exit_code == ExitCode.INTERRUPTED  # creates were sent: resumable
    assert f"cannot write {run_dir / 'journal.jsonl'}" in caught.value.message
    state = load(run_dir)
    assert state.torn_lines == 1
    journaled = set(state.started) | set(state.outcomes)
    posted = set(creations(box.ledger()))
    assert posted and posted <= journaled, posted - journaled  # nothing sent unrecorded
    assert len(posted) < 60  # the run stopped
    result = run_job(prepared, box.url, run_dir)  # room again: the resume finishes it
    assert result.exit_code == ExitCode.OK
    made = creations(box.ledger())
    assert len(made) == 60 and set(made.values()) == {1}


@pytest.mark.parametrize("args", [
    ("apply", "{sheet}", "--sandbox", "--reports-dir", "{file}", "--yes"),
    ("plan", "{sheet}", "--sandbox", "--reports-dir", "{file}"),
    ("validate", "{sheet}", "--reports-dir", "{file}", "--run-id", "check"),  # clean: a file
    # only where a --run-id asks for it
    ("template", "--out", "{file}"),
    ("render", "{sheet}", "--out", "{file}/payloads.jsonl"),
    ("groups", "--sandbox", "--reports-dir", "{file}"),
], ids=lambda args: args[0])
def test_regression_a_file_where_a_folder_belongs_exits_2_naming_it(
        tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...]) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder", "utf-8")
    code = main(*(a.format(sheet=sheet, file=blocker) for a in args))
    err = capsys.readouterr().err
    assert code == ExitCode.INPUT_ERROR, err
    assert f"{blocker} is a file, not a folder" in err and "internal error" not in err


def test_regression_render_out_to_an_unwritable_place_exits_2_naming_it(
        tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2)
    assert main("render", sheet, "--out", "/proc/x") == ExitCode.INPUT_ERROR
    assert "error: cannot write /proc/x: " in capsys.readouterr().err


def test_regression_a_run_log_that_cannot_be_written_never_fails_the_command(
        tmp_path: Path) -> None:
    tee = logs._JsonFileTee(tmp_path / "run.log.jsonl")
    tee._handle = _FillingFile(tee._handle, 10)  # type: ignore[assignment]
    tee(None, "info", {"event": "row.created", "row": 2})  # queued for the writer thread
    tee.flush()  # the writer's turn came: the disk is full
    event = tee(None, "info", {"event": "row.created", "row": 3})  # the next event says so
    assert "cannot write" in event["run_log_error"] and "No space left" in event["run_log_error"]
    assert tee(None, "info", {"event": "row.created", "row": 4}) == {"event": "row.created",
                                                                     "row": 4}
    tee.close()
    tee = logs._JsonFileTee(tmp_path / "run.log.jsonl")
    tee._handle = _FillingFile(tee._handle, 10)  # type: ignore[assignment]
    event = tee(None, "error", {"event": "run.fatal"})  # an error is written at once
    assert "No space left" in event["run_log_error"]
    tee.close()


def test_regression_output_error_exits_2_before_sending_and_4_after() -> None:
    error = OutputError.from_os_error(Path("reports/r/results.csv"), ENOSPC)
    assert error.exit_code == ExitCode.INPUT_ERROR
    assert error.message == ("cannot write reports/r/results.csv: No space left on device "
                             "(errno 28)")
    assert error.after_sending(False) is error
    later = error.after_sending(True, "apply --resume r")
    assert later.exit_code == ExitCode.INTERRUPTED and later.message.endswith("; apply --resume r")


# --- item 14: a bug stops the run with exit 70 ------------------------------------------


def test_regression_a_bug_in_a_row_stops_new_work_keeps_its_message_and_exits_70(
        tmp_path: Path, env: None, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 6, groups=("decent_dropsy",))
    real = runner_module.resolved
    calls: list[int] = []

    def buggy(payload: dict[str, Any], secrets: Any) -> dict[str, Any]:
        sent = real(payload, secrets)  # registers the token with the redactor
        calls.append(1)
        if len(calls) == 2:
            raise KeyError(f"boom {json.dumps(sent)}")
        return sent

    monkeypatch.setattr(runner_module, "resolved", buggy)
    reports = tmp_path / "reports"
    code = main("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
                "--run-id", "r1", "--concurrency", "1", "--log-format", "json")
    captured = capsys.readouterr()
    assert code == ExitCode.INTERNAL, captured.err[-2000:]
    assert "internal error:" in captured.err and "please report it, with" in captured.err
    rows = csv_rows(reports / "r1" / "results.csv")
    assert [r["status"] for r in rows] == ["created", "failed", *["not_attempted"] * 4]
    bug = rows[1]
    assert bug["error_code"] == "InternalError" and bug["error_message"].startswith(
        "KeyError: 'boom {")
    assert {r["error_code"] for r in rows[2:]} == {"internal"}
    assert len(creations(box.ledger())) == 1  # nothing new was sent after the bug
    log = (reports / "r1" / "run.log.jsonl").read_text("utf-8")
    assert "row.internal_error" in log and "Traceback (most recent call last)" in log
    for text in (log, captured.out, captured.err, json.dumps(rows)):
        assert TOKEN not in text
    state = load(reports / "r1")
    assert set(state.started) == {("decent_dropsy", "tt_00001")}  # looked up on resume


def test_regression_exit_70_is_documented_as_a_bug_to_report() -> None:
    text = README.read_text("utf-8")
    table = text[text.index("### Exit codes"):text.index("## Using it from Python")]
    assert "| 70 | `internal` | internal error: please report, with run.log.jsonl" in table
    assert "70 internal error" in (errors_module.__doc__ or "")
    assert ExitCode.INTERNAL == 70

