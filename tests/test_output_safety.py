"""Secrets never leak; spreadsheet formulas never run; report.html renders in a real browser."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fastexcel
import polars as pl
import pytest

from batch_provisioner.sandbox import SandboxHandle, run_in_process
from tests.apply_helpers import write_sheet

ROOT = Path(__file__).resolve().parents[1]
ENV_TOKEN = "env-token-5f1c9a7e2b-should-never-appear"
FILE_TOKEN = "file-token-8d3e6b1a4c-should-never-appear"
CELL_TOKEN = "cell-token-2a7f0c9e5d-should-never-appear"
CLIENT_SECRET = "client-secret-6b2d8f4a1e-never"
API_SECRET = "api-secret-9c4e7a2f6b-never"
API_KEY = "api-key-leaktest"
SECRETS = [ENV_TOKEN, FILE_TOKEN, CELL_TOKEN, CLIENT_SECRET, API_SECRET,
           base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()]


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
    time.sleep(2.0)
    crash.send_signal(signal.SIGKILL)
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
    assert "http://" not in page.read_text().replace("http://www.w3.org/2000/svg", "")
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
