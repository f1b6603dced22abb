"""Inputs read from where they live: https links and S3 (issue 17).

Sheets are served by a loopback HTTP server (signed links, a redirect, a Google-Sheets-like
``pub?output=xlsx`` link, a 404, a sign-in page answered with 200, a slow answer, bodies too
big) and by moto's S3 server on loopback, as CSV, XLSX and Parquet, each through ``validate``
and ``apply --sandbox``. The CLI runs in this process (``_run``): the embedded sandbox, the
downloads and the run all stay on 127.0.0.1, and no test waits for a real timeout.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest
import structlog

from batch_provisioner import cli, logs
from batch_provisioner.errors import InputError
from batch_provisioner.safety import REDACTOR, redacted_url
from batch_provisioner.sheet.fetch import _s3_options
from batch_provisioner.sheet.source import open_source
from tests.apply_helpers import ENV, TOKEN, serving, write_sheet
from tests.remote_helpers import AWS_SECRET, aws_env, s3_bucket, s3_server

SIG = "5f0e2d7c9b1a48e3a6c4f2e1d0b9a8c7e6f5d4c3b2a1908172635445362718aa"  # a signed link's
REDIRECT_SIG = "r3d1r3ct-9a8b7c6d5e4f3a2b1c0d-never-shown"  # the signature of a redirect target
LINK_TOKEN = "tok-7b2e9c4f1a6d3e8b"  # the short-link's own token
BUCKET = "agency-sheets"
ROWS = 6
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _formats(csv_path: Path) -> dict[str, bytes]:
    """The same sheet as CSV, XLSX and Parquet bytes (every cell text)."""
    frame = pl.read_csv(csv_path, infer_schema=False)
    xlsx, parquet = io.BytesIO(), io.BytesIO()
    frame.write_excel(xlsx)
    frame.write_parquet(parquet)
    return {"csv": csv_path.read_bytes(), "xlsx": xlsx.getvalue(),
            "parquet": parquet.getvalue()}


class _Site(BaseHTTPRequestHandler):
    """A file host: signed links, public ones (under ``/public/``), a short link that
    redirects to a signed one, and the ways a link goes wrong. ``files``: path -> (content
    type, bytes); ``hits`` counts every GET; a file outside ``/public/`` is served only to a
    signed query (``Signature=`` or ``sig=``, not ``bad``), else 403."""

    files: ClassVar[dict[str, tuple[str, bytes]]] = {}
    hits: ClassVar[Counter[str]] = Counter()
    release: ClassVar[threading.Event] = threading.Event()
    drips: ClassVar[list[str]] = []  # how each drip ended: "hung up" or "sent all"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.hits[path] += 1
        if path.startswith("/go/"):  # a short link: 302 to a signed URL of its own
            self._redirect(f"/files/{path[4:]}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                           f"&X-Amz-Signature={REDIRECT_SIG}")
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/to-plain-http":  # a downgrade: refused before anything is sent there
            self._redirect("http://files.example/clients.csv")
        elif path == "/api.csv":  # an API's error answered with 200
            self._send(200, "application/json", b'{"error": "sign in first"}')
        elif path == "/slow.csv":
            self.release.wait(10)  # the client gives up first (its timeout is 1 s here)
            with contextlib.suppress(OSError):  # it has gone
                self._send(200, "text/csv", b"group_id,schema\n")
        elif path == "/endless.csv":
            self._endless()
        elif path == "/drip.csv":
            self._drip()
        elif path in ("/gzip.csv", "/gzip-twice.csv"):  # the sheet, compressed once or twice
            layers = 2 if "twice" in path else 1
            body = self.files["/files/clients.csv"][1]
            for _ in range(layers):
                body = gzip.compress(body)
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Encoding", ", ".join(["gzip"] * layers))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/declared-huge.csv":
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif path == "/login.csv":  # a sign-in page, answered with 200 and its real type
            self._send(200, "text/html; charset=utf-8",
                       b"<!DOCTYPE html><html><body>Sign in to continue</body></html>")
        elif path == "/untyped-login.csv":  # the same page, its type claiming CSV
            self._send(200, "text/csv", b"\n  <html><head><title>Sign in</title></head></html>")
        elif path in self.files and (path.startswith("/public/") or _signed(query)):
            content_type, body = self.files[path]
            self._send(200, content_type, body, path.rpartition("/")[2])
        elif path in self.files:
            self._send(403, "application/xml", b"<Error><Code>AccessDenied</Code></Error>")
        else:
            self._send(404, "text/plain", b"no such file")

    def _send(self, status: int, content_type: str, body: bytes, name: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if name and "." not in name:  # an export link without a file name in its path
            self.send_header("Content-Disposition", f'attachment; filename="{name}.parquet"')
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _endless(self) -> None:
        """CSV without a length, more of it than the cap (1 MB here) allows."""
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        line = b"decent_dropsy,tt_x,AllAccounts\n" * 2048
        try:
            for _ in range(64):  # 4 MB at most
                self.wfile.write(line)
        except OSError:  # the client stopped reading at the cap
            return


    def _drip(self) -> None:
        """CSV without a length, a byte every 50 ms for 30 s: each read gets a byte long
        before it would time out, so only the whole download's deadline (1 s) ends it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        try:
            self.wfile.write(b"group_id,schema\n")
            for _ in range(600):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client gave up
            self.drips.append("hung up")
        else:
            self.drips.append("sent all")


def _signed(query: str) -> bool:
    values = [part.partition("=") for part in query.split("&")]
    return any(key.endswith(("Signature", "sig")) and value not in ("", "bad")
               for key, _, value in values)


@dataclass
class Site:
    """The loopback file host: its base URL, its files (path -> (content type, bytes)), how
    often each path was asked for, and how each drip ended."""

    url: str
    files: dict[str, tuple[str, bytes]]
    hits: Counter[str]
    drips: list[str]


@pytest.fixture(scope="module")
def host() -> Iterator[Site]:
    handler = type("Handler", (_Site,), {"files": {}, "hits": Counter(),
                                          "release": threading.Event(), "drips": []})
    with serving(handler) as url:
        yield Site(url, handler.files, handler.hits, handler.drips)
        handler.release.set()


@pytest.fixture()
def site(host: Site) -> Iterator[Site]:
    """The file host, emptied after each test."""
    yield host
    host.files.clear()
    host.hits.clear()
    host.drips.clear()


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


def _bucket(endpoint: str) -> Any:
    return s3_bucket(endpoint, BUCKET)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test: the sheet's token in the env, AWS pointed at nothing but the emulator (no
    config files, no instance metadata), small download limits, no proxy for loopback."""
    for name, value in {**ENV, **aws_env(None, tmp_path), "COLUMNS": "200",
                        "BATCH_PROVISIONER_FETCH_TIMEOUT": "1",
                        "BATCH_PROVISIONER_FETCH_MAX_MB": "1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """The CLI in this process: (its exit code, stdout and stderr). Never a traceback."""
    saved = structlog.get_config()
    try:
        with pytest.raises(SystemExit) as done:
            cli.main([str(a) for a in args])
    finally:
        logs.close_run_log()
        structlog.configure(**saved)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and "internal error" not in text, text
    assert TOKEN not in text
    code = done.value.code
    return (int(code) if isinstance(code, int) else 0), text


def _folder_text(folder: Path) -> str:
    """Every file under ``folder`` as text (an XLSX's XML, a Parquet file's rows included)."""
    import zipfile

    texts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        texts.append(path.read_bytes().decode("utf-8", "replace"))
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                texts += [archive.read(n).decode("utf-8", "replace") for n in archive.namelist()]
        elif path.suffix == ".parquet":
            texts.append(pl.read_parquet(path).write_csv())
    return "\n".join(texts)


def _results(reports: Path, run_id: str) -> list[dict[str, str]]:
    with (reports / run_id / "results.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _journal(reports: Path, run_id: str) -> list[dict[str, object]]:
    lines = (reports / run_id / "journal.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _https_link(site: Site, fmt: str, body: bytes) -> str:
    """A link to ``body`` as a person would get one: CSV behind a short link that redirects
    to a signed URL, XLSX as Google Sheets publishes it (``pub?output=xlsx``), Parquet from
    an export link with no file name in its path (the server's Content-Disposition names
    it)."""
    if fmt == "csv":
        site.files["/files/clients.csv"] = ("text/csv", body)
        return f"{site.url}/go/clients.csv?token={LINK_TOKEN}"
    if fmt == "xlsx":
        site.files["/spreadsheets/d/e/2PACX-1vQ/pub"] = (XLSX, body)
        return f"{site.url}/spreadsheets/d/e/2PACX-1vQ/pub?output=xlsx&X-Goog-Signature={SIG}"
    site.files["/export/clients"] = ("application/octet-stream", body)
    return f"{site.url}/export/clients?sv=2024-05-04&sp=r&sig={SIG}"


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_a_sheet_behind_a_signed_https_link_validates_and_applies_end_to_end(
        fmt: str, site: Site, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    body = _formats(write_sheet(tmp_path / "clients.csv", ROWS))[fmt]
    url = _https_link(site, fmt, body)
    reports = tmp_path / "reports"
    code, checked = _run(capsys, "validate", url, "--reports-dir", reports, "--run-id", "check")
    assert code == 0, checked
    assert f"{ROWS} rows checked: no problems" in checked
    code, applied = _run(capsys, "apply", url, "--sandbox", "--reports-dir", reports,
                         "--run-id", "run")
    assert code == 0, applied
    assert [r["status"] for r in _results(reports, "run")] == ["created"] * ROWS
    header, inputs = _journal(reports, "run")[:2]
    # the journal fingerprints the bytes that arrived (sheet, no defaults, no custom reports)
    assert header["input_sha256"] == hashlib.sha256(body + b"--").hexdigest()
    assert inputs["sheet"] == header["input"] == redacted_url(url)
    outputs = checked + applied + _folder_text(reports)
    for secret in (SIG, REDIRECT_SIG, LINK_TOKEN):
        assert secret not in outputs
    assert "******" in str(inputs["sheet"])


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_a_sheet_in_s3_validates_and_applies_end_to_end(
        fmt: str, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    body = _formats(write_sheet(tmp_path / "clients.csv", ROWS))[fmt]
    _bucket(s3).put_object(Bucket=BUCKET, Key=f"onboarding/clients.{fmt}",
                           Body=body)
    url = f"s3://{BUCKET}/onboarding/clients.{fmt}"
    reports = tmp_path / "reports"
    code, checked = _run(capsys, "validate", url, "--reports-dir", reports)
    assert code == 0, checked
    assert f"{ROWS} rows checked: no problems" in checked
    code, applied = _run(capsys, "apply", url, "--sandbox", "--reports-dir", reports,
                         "--run-id", "run")
    assert code == 0, applied
    assert [r["status"] for r in _results(reports, "run")] == ["created"] * ROWS
    header = _journal(reports, "run")[0]
    assert header["input"] == url
    assert header["input_sha256"] == hashlib.sha256(body + b"--").hexdigest()
    assert AWS_SECRET not in applied + checked + _folder_text(reports)


def test_defaults_custom_reports_and_sandbox_groups_are_read_from_urls_too(
        s3: str, site: Site, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    bucket = _bucket(s3)
    sheet = "group_id,schema,sync_mode,access_token\n" + "".join(
        f"{group},remote_{i},AllAccounts,env:TT_TOKEN\n"
        for i, group in enumerate(["decent_dropsy", "happy_harbor", "not_in_account"]))
    for key, body in (("in/clients.csv", sheet), ("in/defaults.toml", "sync_frequency = 360\n"),
                      ("in/reports.csv", "schema,table_name,report_type,metrics\n"
                                         "remote_0,spend_daily,auction_basic_campaign_report,"
                                         "spend\n")):
        bucket.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    site.files["/groups.csv"] = ("text/csv",
                                 b"id,name\ndecent_dropsy,Acme\nhappy_harbor,Blue Fin\n")
    inputs = [f"s3://{BUCKET}/in/clients.csv", "--defaults", f"s3://{BUCKET}/in/defaults.toml",
              "--custom-reports", f"s3://{BUCKET}/in/reports.csv"]
    code, rendered = _run(capsys, "render", *inputs)
    assert code == 0, rendered
    lines = [json.loads(line) for line in rendered.splitlines() if line.startswith("{")]
    payloads = {line["key"]["schema"]: line["payload"] for line in lines}
    assert {p["sync_frequency"] for p in payloads.values()} == {360}
    assert [r["table_name"] for r in payloads["remote_0"]["config"]["custom_reports"]] == [
        "spend_daily"]
    reports = tmp_path / "reports"
    code, applied = _run(capsys, "apply", *inputs, "--sandbox", "--sandbox-groups",
                         f"{site.url}/groups.csv?sig={SIG}", "--reports-dir", reports,
                         "--run-id", "r")
    assert code == 1, applied
    # the sandbox holds exactly the groups file's groups: the one it lacks cannot be created
    # (seeded from the sheet instead, every row would be)
    assert [r["status"] for r in _results(reports, "r")] == ["created", "created", "failed"]
    assert SIG not in applied + _folder_text(reports)


@pytest.mark.parametrize(("path", "problem"), [
    ("/missing.csv", "not found (HTTP 404)"),
    ("/files/clients.csv?X-Amz-Signature=bad", "forbidden (HTTP 403)"),
    ("/login.csv", "not a spreadsheet: the server answered with an HTML page"),
    ("/untyped-login.csv", "not a spreadsheet: the server answered with an HTML page"),
    ("/slow.csv", "timed out: not downloaded within 1 s"),
    ("/endless.csv", "too big: a downloaded input may be at most 1 MB"),
    ("/declared-huge.csv", "too big: a downloaded input may be at most 1 MB "
                           "(BATCH_PROVISIONER_FETCH_MAX_MB), and this one is 953,674.3 MB"),
    ("/loop", "more than 5 redirects"),
    ("/to-plain-http", "refused: it leads to plain http:// at files.example; only https:// is "
                       "fetched"),
    ("/api.csv", "not a spreadsheet: the server answered with JSON"),
])
def test_a_link_that_serves_no_sheet_is_exit_2_naming_it_without_its_secrets(
        path: str, problem: str, site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.files["/files/clients.csv"] = ("text/csv", b"group_id,schema\n")
    url = f"{site.url}{path}" + ("&" if "?" in path else "?") + f"token={LINK_TOKEN}"
    code, said = _run(capsys, "validate", url)
    assert code == 2, said
    assert f"error: {redacted_url(url)}: {problem}" in " ".join(said.split())
    assert LINK_TOKEN not in said


def test_a_body_that_drips_in_is_given_up_at_the_downloads_deadline(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = _run(capsys, "validate", f"{site.url}/drip.csv?token={LINK_TOKEN}")
    assert code == 2
    assert "timed out: not downloaded within 1 s" in said, said
    while not site.drips:  # the server notices the hang-up at its next byte
        time.sleep(0.05)
    assert site.drips == ["hung up"]  # the client stopped reading long before the drip ended


def test_sigterm_during_a_download_is_an_interruption_that_leaves_no_copy_behind(
        site: Site, tmp_path: Path) -> None:
    # timeout(1), cron and systemd stop a job with SIGTERM; by default that ends Python at
    # once, without its cleanup, and the downloaded part of the sheet stayed in the temp folder
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "BATCH_PROVISIONER_FETCH_TIMEOUT": "60"}
    job = subprocess.Popen(
        [sys.executable, "-m", "batch_provisioner", "validate",
         f"{site.url}/drip.csv?token={LINK_TOKEN}"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(temp.glob("batch-provisioner-*/*")):  # the download has begun
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=30)
    assert job.returncode == 4, (out, err)
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and LINK_TOKEN not in out + err
    assert list(temp.iterdir()) == []


def test_a_gzip_encoded_sheet_is_read_but_one_compressed_twice_over_is_refused(
        site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.files["/files/clients.csv"] = ("text/csv", write_sheet(tmp_path / "c.csv", 2)
                                        .read_bytes())
    code, said = _run(capsys, "validate", f"{site.url}/gzip.csv")
    assert code == 0, said
    # each layer multiplies what one read expands to: a few KB twice over can be gigabytes
    code, said = _run(capsys, "validate", f"{site.url}/gzip-twice.csv?token={LINK_TOKEN}")
    assert code == 2
    assert (f"error: {site.url}/gzip-twice.csv?token=******: refused: the server compressed "
            "it 2 times over (Content-Encoding: gzip, gzip)") in " ".join(said.split())


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:9/clients.csv", "unreachable: cannot connect (connection refused)"),
    ("az://sheets/clients.csv", "cannot be fetched (Generic MicrosoftAzure error: Account must "
                                "be specified)"),
    ("http://files.example/clients.csv", "plain http:// is read only from this machine"),
    ("ftp://127.0.0.1/clients.csv", "ftp:// URLs are not read"),
    ("s3://agency-sheets/", "names no file"),
])
def test_a_url_that_cannot_be_fetched_is_exit_2_and_says_why(
        url: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = _run(capsys, "validate", url)
    assert code == 2 and problem in said, said


def test_an_object_missing_from_s3_is_exit_2_not_found(
        s3: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    _bucket(s3)
    code, said = _run(capsys, "plan", f"s3://{BUCKET}/nowhere/clients.xlsx", "--sandbox")
    assert code == 2
    assert f"error: s3://{BUCKET}/nowhere/clients.xlsx: not found" in said


def test_a_resume_refuses_a_sheet_that_changed_remotely_unless_forced(
        site: Site, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    sheet = write_sheet(tmp_path / "clients.csv", ROWS)
    site.files["/files/clients.csv"] = ("text/csv", sheet.read_bytes())
    url = f"{site.url}/files/clients.csv?X-Amz-Signature={SIG}"
    reports = tmp_path / "reports"
    apply = ["apply", url, "--sandbox", "--reports-dir", reports, "--limit", "2"]
    assert _run(capsys, *apply, "--run-id", "r")[0] == 4  # a canary: the rest wait
    assert _run(capsys, *apply, "--resume", "r")[0] == 4  # the same bytes: it carries on
    site.files["/files/clients.csv"] = ("text/csv",
                                        sheet.read_bytes().replace(b"1440", b"360"))
    code, said = _run(capsys, *apply, "--resume", "r")
    assert code == 2
    assert "run r was started with different input" in said and SIG not in said
    code, said = _run(capsys, "apply", url, "--sandbox", "--reports-dir", reports,
                      "--resume", "r", "--force")
    assert code == 0, said
    assert Counter(r["status"] for r in _results(reports, "r")) == {"created": ROWS}


def test_status_rebuilds_a_lost_report_from_the_runs_remote_sheet(
        site: Site, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    body = write_sheet(tmp_path / "c.csv", 3).read_bytes()
    site.files["/public/clients.csv"] = site.files["/files/clients.csv"] = ("text/csv", body)
    reports = tmp_path / "reports"
    for run_id, url in (("plain", f"{site.url}/public/clients.csv?output=csv"),
                        ("signed", f"{site.url}/files/clients.csv?X-Amz-Signature={SIG}")):
        assert _run(capsys, "apply", url, "--sandbox", "--reports-dir", reports,
                    "--run-id", run_id)[0] == 0
        (reports / run_id / "results.parquet").unlink()
        code, said = _run(capsys, "status", run_id, "--sandbox", "--reports-dir", reports)
        assert code == 0, said
    # an unsigned link is fetched again: the rebuilt results have the sheet's own columns;
    # a signed one is not (its token is not kept): the journal's outcomes alone
    assert "client_ref" in _results(reports, "plain")[0]
    assert "client_ref" not in _results(reports, "signed")[0]
    assert site.hits == {"/public/clients.csv": 2, "/files/clients.csv": 1}


def test_file_references_of_a_remote_sheet_need_secrets_dir(
        site: Site, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    site.files["/files/clients.csv"] = (
        "text/csv", b"group_id,schema,sync_mode,access_token\n"
                    b"decent_dropsy,tt_file,AllAccounts,file:tokens/acme.txt\n")
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "acme.txt").write_text("acme-token-123456\n")
    url = f"{site.url}/files/clients.csv?sig={SIG}"
    code, said = _run(capsys, "validate", url)
    assert code == 1
    assert "a sheet read from a URL has no folder to read file: references in" in said
    assert "give --secrets-dir DIR" in said
    code, said = _run(capsys, "validate", url, "--secrets-dir", tmp_path)
    assert code == 0, said


def test_an_aws_profile_in_the_shared_credentials_file_is_used(
        s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    _bucket(s3).put_object(Bucket=BUCKET, Key="p/clients.csv",
                           Body=b"group_id,schema\nx,y\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[agency]\naws_access_key_id = AKIAAGENCY\n"
                           "aws_secret_access_key = agency-profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "agency")
    with REDACTOR.scoped():
        source = open_source(f"s3://{BUCKET}/p/clients.csv")
        assert source.local.read_bytes() == b"group_id,schema\nx,y\n"
        assert REDACTOR.scrub("agency-profile-secret") == "******"
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(InputError, match=r"the AWS profile 'nobody' \(AWS_PROFILE\) is in neither"):
        open_source(f"s3://{BUCKET}/p/clients.csv")


def test_without_any_aws_credentials_objects_are_read_unsigned(
        s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys, no profile, no role (instance metadata is off here): a public object is read,
    a private one is forbidden, and the error says no credentials were found."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    bucket = _bucket(s3)
    bucket.put_object(Bucket=BUCKET, Key="public/clients.csv", Body=b"group_id,schema\n",
                      ACL="public-read")
    bucket.put_object(Bucket=BUCKET, Key="private/clients.csv", Body=b"group_id,schema\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    assert _s3_options(f"s3://{BUCKET}/public/clients.csv") == (
        {"region": "us-east-1", "skip_signature": True}, True)
    source = open_source(f"s3://{BUCKET}/public/clients.csv")
    assert source.local.read_bytes() == b"group_id,schema\n"
    with pytest.raises(InputError, match=r"forbidden \(HTTP 403\): no AWS credentials were "
                                         "found"):
        open_source(f"s3://{BUCKET}/private/clients.csv")


def test_a_signed_urls_query_is_masked_and_its_secrets_registered() -> None:
    with REDACTOR.scoped():
        shown = redacted_url(
            "https://u:pa55word99@files.example/d/pub?output=csv&gid=0&X-Amz-Date=20261201"
            "&X-Amz-Credential=AKIA%2F20261201%2Fus-east-1&X-Amz-Signature=abc123def456"
            "&sig=Zm9v%2Bbar%3D#frag")
        assert shown == ("https://u:******@files.example/d/pub?output=csv&gid=0"
                         "&X-Amz-Date=20261201&X-Amz-Credential=******"
                         "&X-Amz-Signature=******&sig=******")
        # a library's message quoting the URL, encoded or not, is masked too
        assert REDACTOR.scrub("AKIA/20261201/us-east-1 abc123def456 Zm9v+bar= pa55word99") == (
            "****** ****** ****** ******")
        assert redacted_url(shown) == shown


def test_download_limits_from_the_environment_are_checked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BATCH_PROVISIONER_FETCH_TIMEOUT", "soon")
    code, said = _run(capsys, "validate", "https://files.example/clients.csv")
    assert code == 2
    assert "BATCH_PROVISIONER_FETCH_TIMEOUT='soon' must be a positive number" in said
