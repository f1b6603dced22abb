"""Secrets never leak; spreadsheet formulas never run; report.html renders in a real browser."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import fastexcel
import httpx
import polars as pl
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_process
from tests.apply_helpers import serving, write_sheet

ROOT = Path(__file__).resolve().parents[1]
ENV_TOKEN = "env-token-5f1c9a7e2b-should-never-appear"
FILE_TOKEN = "file-token-8d3e6b1a4c-should-never-appear"
CELL_TOKEN = "cell-token-2a7f0c9e5d-should-never-appear"
CLIENT_SECRET = "client-secret-6b2d8f4a1e-never"
API_SECRET = "api-secret-9c4e7a2f6b-never"
API_KEY = "api-key-leaktest"
SECRETS = [ENV_TOKEN, FILE_TOKEN, CELL_TOKEN, CLIENT_SECRET, API_SECRET,
           base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()]
#: Tokens an API quotes back awkwardly: each has an ASCII core that every form of it contains
#: (as is, stripped, JSON-escaped with or without \u escapes), so a scan for the core finds
#: every form, even one cut short after it.
NL_TOKEN = "nl-token-3e8a1f7c-never\n"  # from env:, ends in a newline
QB_TOKEN = 'qb-token-4d7e2b9a-"x\\y-never'  # from file:, a quote and a backslash
UNI_TOKEN = "uni-token-5b9c0e3d-ŧøķėñ-中-never"  # from env:, non-ASCII
HOSTILE = {NL_TOKEN: "nl-token-3e8a1f7c", QB_TOKEN: "qb-token-4d7e2b9a",
           UNI_TOKEN: "uni-token-5b9c0e3d"}
#: A signed link's secrets: the rerun reads the sheet from a URL that carries them.
URL_SIGNATURE = "9d3c7b1e5f2a8d4c6b0e1f7a3c5d9b2e8f4a6c0d1e7b3f5a9c2d8e4b6f0a1c3d"
URL_CREDENTIAL = "AKIALEAKTEST7Q2W/20261201/us-east-1/s3/aws4_request"


@pytest.fixture(scope="module")
def box() -> Iterator[SandboxHandle]:
    with run_in_process(profile="fast", api_key=API_KEY, api_secret=API_SECRET) as handle:
        yield handle


def _env() -> dict[str, str]:
    return {**os.environ, "TT_TOKEN": ENV_TOKEN, "TT_CLIENT_SECRET": CLIENT_SECRET,
            "FIVETRAN_API_KEY": API_KEY, "FIVETRAN_API_SECRET": API_SECRET}


def _sheet(path: Path, n: int) -> Path:
    (path.parent / "token.txt").write_text(FILE_TOKEN + "\n")
    lines = ["group_id,schema,sync_mode,access_token,client_id,client_secret,redirect_uri,note"]
    for i in range(n):
        group = "no_such_group" if i % 10 == 3 else "decent_dropsy"
        schema = "Bad Schema" if i % 10 == 4 else f"leak_{i:04d}"
        auth = [("env:TT_TOKEN", "", ""), ("file:token.txt", "", ""), (CELL_TOKEN, "", ""),
                ("", "env:TT_TOKEN", "env:TT_CLIENT_SECRET")][i % 4]
        lines.append(f"{group},{schema},AllAccounts,{auth[0]},{auth[1]},{auth[2]},,row {i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _apply(sheet: Path, box: SandboxHandle, reports: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "batch_provisioner", "apply", str(sheet), "--sandbox-url",
            box.url, "--reports-dir", str(reports), *extra]


def _scan(texts: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, secret[:12]) for where, text in texts.items() for secret in SECRETS
            if secret in text]


def test_no_secret_reaches_any_output_through_success_failure_and_crash(
        tmp_path: Path, box: SandboxHandle) -> None:
    box.reset()
    sheet = _sheet(tmp_path / "clients.csv", 120)
    reports = tmp_path / "reports"
    captured: dict[str, str] = {}
    for name, extra in (("json", ["--log-format", "json"]), ("console",
                                                               ["--log-format", "console"])):
        done = subprocess.run(_apply(sheet, box, reports, "--run-id", f"ok-{name}", *extra),
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 1, done.stderr[-1500:]  # bad rows fail, good rows land
        captured[f"{name}.stdout"], captured[f"{name}.stderr"] = done.stdout, done.stderr
    crash = subprocess.Popen(_apply(sheet, box, reports, "--run-id", "crash"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
    journal = reports / "crash" / "journal.jsonl"
    give_up = time.monotonic() + 60  # a loaded machine may take seconds to start sending
    while time.monotonic() < give_up and crash.poll() is None and not (
            journal.exists() and '"type": "send"' in journal.read_text(errors="replace")):
        time.sleep(0.05)
    crash.send_signal(signal.SIGKILL)  # mid-run: something was sent, the rest was not
    out, err = crash.communicate()
    captured["crash.stdout"], captured["crash.stderr"] = out, err
    resumed = subprocess.run(_apply(sheet, box, reports, "--resume", "crash"),
                             capture_output=True, text=True, env=_env(), timeout=120)
    captured["resume.stdout"], captured["resume.stderr"] = resumed.stdout, resumed.stderr
    validate = subprocess.run([sys.executable, "-m", "batch_provisioner", "validate",
                               str(sheet), "--reports-dir", str(reports)],
                              capture_output=True, text=True, env=_env(), timeout=60)
    captured["validate"] = validate.stdout + validate.stderr
    box_url = ["--sandbox-url", box.url, "--reports-dir", str(reports)]
    lifecycle = {
        "plan": ["plan", str(sheet), *box_url, "--run-id", "plan"],
        "status": ["status", "ok-json", *box_url],
        "connect-cards": ["connect-cards", "ok-json", *box_url],
        "rollback": ["rollback", "crash", "--yes", *box_url],
    }
    for name, args in lifecycle.items():
        done = subprocess.run([sys.executable, "-m", "batch_provisioner", *args],
                              capture_output=True, text=True, timeout=120,
                              env={**_env(), "COLUMNS": "200"})
        assert "Traceback" not in done.stderr, (name, done.stderr[-1500:])
        captured[name] = done.stdout + done.stderr
    assert (reports / "ok-json" / "connect_cards.csv").exists()
    assert (reports / "crash" / "rollback" / "results.csv").exists()
    files = [p for p in reports.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.csv", "results.xlsx", "results.parquet",
                                       "failed_rows.csv", "summary.json", "report.html",
                                       "journal.jsonl", "run.log.jsonl", "validation.csv"}
    for path in files:
        captured[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                captured[f"{path}:xml"] = "".join(
                    archive.read(n).decode("utf-8", "replace") for n in archive.namelist())
    assert _scan(captured) == []
    # and the scan can see: the input itself holds the cell token
    assert _scan({"input": sheet.read_text()}) == [("input", CELL_TOKEN[:12])]


def _forms(token: str) -> set[bytes]:
    """Every form of ``token`` an output could hold, as UTF-8 bytes, its core included."""
    texts = {HOSTILE.get(token, token)}
    for base in (token, token.strip()):
        texts |= {base, json.dumps(base)[1:-1], json.dumps(base, ensure_ascii=False)[1:-1]}
    return {t.encode() for t in texts}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` as bytes, plus the decoded text of the packed ones (an XLSX's
    XML, a Parquet file's rows, a SQLite file's dump), so that compression hides nothing."""
    found: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found[str(path)] = path.read_bytes()
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                found[f"{path}:xml"] = b"".join(archive.read(n) for n in archive.namelist())
        elif path.suffix == ".parquet":
            found[f"{path}:rows"] = pl.read_parquet(path).write_csv().encode()
        elif path.suffix == ".sqlite":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                found[f"{path}:dump"] = "\n".join(db.iterdump()).encode()
    return found


def _scan_bytes(found: dict[str, bytes], tokens: list[str]) -> list[tuple[str, str]]:
    return [(where, HOSTILE.get(token, token[:12])) for where, data in found.items()
            for token in tokens if any(form in data for form in _forms(token))]


def _hostile_env() -> dict[str, str]:
    return {**_env(), "NL_TOKEN": NL_TOKEN, "UNI_TOKEN": UNI_TOKEN, "COLUMNS": "200"}


def _hostile_sheet(folder: Path, n: int = 9) -> Path:
    """``n`` rows over the three hostile tokens, each also pasted into the ``note`` column."""
    (folder / "qb.txt").write_text(QB_TOKEN + "\n", encoding="utf-8")
    path = folder / "hostile.csv"
    refs = ["env:NL_TOKEN", "file:qb.txt", "env:UNI_TOKEN"]
    pasted = [NL_TOKEN.strip(), QB_TOKEN, UNI_TOKEN]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group_id", "schema", "sync_mode", "access_token", "note"])
        for i in range(n):
            writer.writerow(["decent_dropsy", f"hostile_{i:03d}", "AllAccounts", refs[i % 3],
                             f"pasted: {pasted[i % 3]}"])
    return path


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "batch_provisioner", *map(str, args)],
                          capture_output=True, text=True, env=_hostile_env(), timeout=120,
                          cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    return done


class _SignedLinks(BaseHTTPRequestHandler):
    """Serves ``sheet`` to a GET that carries ``URL_SIGNATURE``, as a signed link does."""

    sheet = b""

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        signed = f"X-Amz-Signature={URL_SIGNATURE}" in self.path
        body = self.sheet if signed else b"<Error>AccessDenied</Error>"
        self.send_response(200 if signed else 403)
        self.send_header("Content-Type", "text/csv" if signed else "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_rehearsals_whole_reports_folder_holds_no_secret_in_any_form(tmp_path: Path) -> None:
    """``--sandbox``: every file under ``--reports-dir`` as bytes (the sandbox's state.sqlite
    too), through a first run, a rerun that sends nothing (reading the sheet from a signed
    link, whose signature and credential are secrets too), and every other command."""
    sheet = _hostile_sheet(tmp_path)
    reports = tmp_path / "reports"
    where = ["--reports-dir", reports]
    first = _cli("apply", sheet, "--sandbox", *where, "--run-id", "first")
    assert first.returncode == 0, first.stdout + first.stderr
    handler = type("Handler", (_SignedLinks,), {"sheet": sheet.read_bytes()})
    with serving(handler) as url:
        link = (f"{url}/hostile.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                f"{quote(URL_CREDENTIAL, safe='')}&X-Amz-Signature={URL_SIGNATURE}")
        rerun = _cli("apply", link, "--secrets-dir", tmp_path, "--sandbox", *where,
                     "--run-id", "rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "X-Amz-Signature=******" in (reports / "rerun" / "journal.jsonl").read_text()
    assert {r["status"] for r in pl.read_csv(reports / "rerun" / "results.csv",
                                             infer_schema=False).iter_rows(named=True)} == {
        "exists"}
    others = [_cli("plan", sheet, "--sandbox", *where, "--run-id", "plan"),
              _cli("status", "first", "--sandbox", *where),
              _cli("connect-cards", "first", "--sandbox", *where),
              _cli("validate", sheet, *where, "--run-id", "check"),
              _cli("render", sheet, "--out", reports / "render.jsonl")]
    found = _folder_bytes(reports)  # the sandbox state still holding every connection
    others.append(_cli("rollback", "first", "--yes", "--sandbox", *where))
    found |= {f"after rollback: {k}": v for k, v in _folder_bytes(reports).items()}
    assert any(name.endswith("state.sqlite") for name in found)
    assert {Path(name).name for name in found} >= {
        "results.csv", "results.parquet", "failed_rows.csv", "report.html", "journal.jsonl",
        "run.log.jsonl", "plan.csv", "validation.csv", "render.jsonl", "state.sqlite"}
    for i, done in enumerate([first, rerun, *others]):
        found[f"command {i}"] = (done.stdout + done.stderr).encode()
    url_secrets = [URL_SIGNATURE, URL_CREDENTIAL, quote(URL_CREDENTIAL, safe="")]
    assert _scan_bytes(found, [*HOSTILE, *url_secrets]) == []
    assert len(_scan_bytes({"link": link.encode()}, url_secrets)) == 2  # as given: encoded
    # and the scan can see: the input holds the pasted tokens, the sheet's folder the file one
    assert _scan_bytes({"input": sheet.read_bytes()}, list(HOSTILE)) == [
        ("input", core) for core in HOSTILE.values()]


class _EchoingApi(BaseHTTPRequestHandler):
    """In front of a sandbox: every create is refused with a 400 that quotes the submitted
    ``auth`` back as Fivetran's messages quote values: JSON-escaped (with and without \\u
    escapes) and as is. Everything else is passed through."""

    upstream = ""

    def log_message(self, format: str, *args: object) -> None:
        return

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path.startswith("/v1/connections") and body:
            auth = json.loads(body).get("auth") or {}
            token = str(auth.get("access_token"))
            message = (f"Field 'auth' has invalid value '{json.dumps(auth)}' "
                       f"(as text: {json.dumps(auth, ensure_ascii=False)}; "
                       f"token: {json.dumps(token)}; raw: {token})")
            self._answer(400, json.dumps({"code": "InvalidInput", "message": message}).encode(),
                         {"Content-Type": "application/json"})
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("authorization", "content-type", "accept")}
        answer = httpx.request(self.command, self.upstream + self.path, headers=headers,
                               content=body, timeout=30, trust_env=False)
        self._answer(answer.status_code, answer.content,
                     {k: v for k, v in answer.headers.items()
                      if k.lower() == "content-type" or k.lower().startswith(
                          ("x-rate-limit", "retry-after"))})

    def _answer(self, status: int, content: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PATCH = do_DELETE = _relay


@pytest.fixture()
def echoing_api(box: SandboxHandle) -> Iterator[str]:
    box.reset()
    handler = type("Handler", (_EchoingApi,), {"upstream": box.url.rstrip("/")})
    with serving(handler) as url:
        yield url


def test_an_api_that_quotes_submitted_secrets_back_json_escaped_leaks_nothing(
        tmp_path: Path, echoing_api: str) -> None:
    sheet = _hostile_sheet(tmp_path, n=6)
    reports = tmp_path / "reports"
    done = _cli("apply", sheet, "--sandbox-url", echoing_api, "--reports-dir", reports,
                "--run-id", "echo", "--log-format", "json")
    assert done.returncode == 1, done.stdout + done.stderr  # every create refused: rows failed
    results = pl.read_csv(reports / "echo" / "results.csv", infer_schema=False)
    assert set(results["status"]) == {"failed"} and set(results["http_status"]) == {"400"}
    assert all("invalid value" in m and "******" in m for m in results["error_message"])
    found = _folder_bytes(reports)
    assert {Path(name).name for name in found} >= {
        "results.csv", "report.html", "failed_rows.csv", "journal.jsonl", "run.log.jsonl"}
    found["stdout+stderr"] = (done.stdout + done.stderr).encode()
    assert _scan_bytes(found, [*HOSTILE, API_SECRET]) == []


def test_formula_cells_are_neutralised_as_text(tmp_path: Path, box: SandboxHandle) -> None:
    box.reset()
    attacks = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)",
               "=cmd|' /C calc'!A0"]
    sheet = write_sheet(tmp_path / "in.csv", len(attacks))
    frame = pl.read_csv(sheet, infer_schema=False).with_columns(
        pl.Series("client_ref", attacks))
    frame.write_csv(sheet)
    reports = tmp_path / "reports"
    done = subprocess.run(_apply(sheet, box, reports, "--run-id", "f"), capture_output=True,
                          text=True, env={**_env(), "TT_TOKEN": ENV_TOKEN}, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    csv = pl.read_csv(reports / "f" / "results.csv", infer_schema=False)
    assert csv["client_ref"].to_list() == ["'" + a for a in attacks]
    xlsx = fastexcel.read_excel(str(reports / "f" / "results.xlsx")).load_sheet(
        0, dtypes="string").to_polars()
    assert xlsx["client_ref"].to_list() == ["'" + a for a in attacks]
    with zipfile.ZipFile(reports / "f" / "results.xlsx") as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml  # no formula cell at all


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run "
                    "installs it)")
def test_report_html_renders_in_headless_chromium(tmp_path: Path, box: SandboxHandle) -> None:
    box.reset()
    sheet = write_sheet(tmp_path / "in.csv", 9, connect_card_every=3)
    reports = tmp_path / "reports"
    done = subprocess.run(_apply(sheet, box, reports, "--run-id", "h"), capture_output=True,
                          text=True, env={**_env(), "TT_TOKEN": ENV_TOKEN}, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    page = reports / "h" / "report.html"
    text = page.read_text()
    # self-contained: nothing loads from the network (the commands it shows may name a URL)
    loaded = re.findall(r"""(?i)\bsrc\s*=\s*["']?\s*(?:https?:)?//""", text)
    assert loaded == [] and "url(" not in text.lower() and "@import" not in text.lower()
    links = re.findall(r"""(?i)\bhref\s*=\s*["']([^"']*)""", text)
    assert all("connect-card" in link or link.startswith("#") for link in links), links
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0"]
    assert CHROMIUM is not None
    png = tmp_path / "report.png"
    shot = subprocess.run([*flags, f"--screenshot={png}", "--window-size=1280,1600",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert png.exists() and png.stat().st_size > 10_000, shot.stderr[-1500:]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    console = [line for line in (shot.stderr + dom.stderr).splitlines()
               if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert 'id="count-created">9<' in dom.stdout
    assert dom.stdout.count('class="connect-card"') == 3
    assert "connect-card/setup?auth=" in dom.stdout
