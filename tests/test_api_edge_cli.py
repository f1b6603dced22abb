"""A wrong API URL through the CLI: exit 3 within seconds, the URL and the cause on stderr.

Only loopback is used: a closed port, and a stdlib HTTP server answering HTML like a proxy.
"""

from __future__ import annotations

import http.server
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import cli, csv_rows, serving, write_dict_rows, write_sheet

DEAD = "http://127.0.0.1:1"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIVETRAN_API_KEY", "edge-key-5521")
    monkeypatch.setenv("FIVETRAN_API_SECRET", "edge-secret-8813")
    monkeypatch.delenv("FIVETRAN_API_URL", raising=False)


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"<html><body><h1>Corporate proxy: sign in</h1></body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


class _BadGateway(_HtmlPage):
    status = 502


def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    with serving(handler) as url:
        yield url


@pytest.fixture()
def html_server() -> Iterator[str]:
    yield from _serving(_HtmlPage)


@pytest.fixture()
def bad_gateway() -> Iterator[str]:
    yield from _serving(_BadGateway)


def _plain(stderr: str) -> str:
    """stderr without the JSON log lines: what a person reads."""
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("{"))


@pytest.mark.parametrize("by", ["group_id", "group_name"])
def test_plan_against_a_closed_port_exits_3_quickly_naming_the_url(tmp_path: Path,
                                                                  by: str) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 4) if by == "group_id" else write_dict_rows(
        tmp_path / "sheet.csv", [{"group_name": "Happy Harbor", "schema": f"tt_{i}"}
                                 for i in range(3)], ["group_name", "schema", "sync_mode",
                                                      "sync_frequency", "access_token"])
    started = time.monotonic()
    done = cli("plan", sheet, "--api-url", DEAD, "--reports-dir", tmp_path / "reports")
    assert time.monotonic() - started < 10
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"error: cannot reach the Fivetran API at {DEAD}: connection refused" in done.stderr
    assert "edge-secret-8813" not in done.stdout + done.stderr
    assert "invalid" not in done.stdout  # no row was blamed for the URL


def test_apply_against_a_closed_port_exits_3_rows_not_attempted(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 4)
    reports = tmp_path / "reports"
    started = time.monotonic()
    done = cli("apply", sheet, "--api-url", DEAD, "--reports-dir", reports,
               "--run-id", "dead-url", "--log-format", "json")
    assert time.monotonic() - started < 10
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"error: cannot reach the Fivetran API at {DEAD}" in _plain(done.stderr)
    assert "exit code 3" in done.stdout
    run_dir = reports / "dead-url"
    rows = csv_rows(run_dir / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"not_attempted"}
    assert all(DEAD in r["error_message"] for r in rows)
    for name in ("summary.json", "failed_rows.csv", "report.html", "journal.jsonl"):
        assert (run_dir / name).is_file(), name


def test_plan_against_an_html_page_exits_3_naming_the_server(tmp_path: Path,
                                                             html_server: str) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 3)
    done = cli("plan", sheet, "--api-url", html_server, "--reports-dir", tmp_path / "r")
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"error: not a Fivetran API answer from {html_server}: GET " in done.stderr
    assert "HTTP 200 (text/html" in done.stderr


def test_apply_against_a_proxy_502_exits_3_naming_it(tmp_path: Path, bad_gateway: str) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 3)
    done = cli("apply", sheet, "--api-url", bad_gateway, "--reports-dir", tmp_path / "r",
               "--run-id", "proxy", "--log-format", "json")
    assert done.returncode == 3, done.stdout + done.stderr
    assert (f"error: not a Fivetran API answer from {bad_gateway}: GET "
            in _plain(done.stderr))
    assert "HTTP 502 (text/html; charset=utf-8) on 3 tries" in done.stderr
    rows = csv_rows(tmp_path / "r" / "proxy" / "results.csv")
    assert {r["status"] for r in rows} == {"not_attempted"}


def test_plan_against_a_dead_sandbox_url_exits_3_naming_it(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 2)
    done = cli("plan", sheet, "--sandbox-url", DEAD, "--reports-dir", tmp_path / "r")
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"error: cannot reach the Fivetran API at {DEAD}" in done.stderr


def test_status_and_rollback_of_a_run_against_a_closed_port_exit_3(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "sheet.csv", 2)
    reports = tmp_path / "reports"
    made = cli("apply", sheet, "--sandbox", "--reports-dir", reports, "--run-id", "made",
               "--log-format", "json")
    assert made.returncode == 0, made.stdout + made.stderr
    status = cli("status", "made", "--reports-dir", reports, "--api-url", DEAD)
    assert status.returncode == 3, status.stdout + status.stderr
    assert f"error: cannot reach the Fivetran API at {DEAD}" in status.stderr
    rollback = cli("rollback", "made", "--reports-dir", reports, "--api-url", DEAD, "--yes")
    assert rollback.returncode == 3, rollback.stdout + rollback.stderr
    assert f"error: cannot reach the Fivetran API at {DEAD}" in _plain(rollback.stderr)
    assert "0 deleted now" in rollback.stdout


def test_an_api_url_written_with_v1_as_fivetrans_docs_do_works(
        tmp_path: Path, box: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIVETRAN_API_KEY", box.api_key)
    monkeypatch.setenv("FIVETRAN_API_SECRET", box.config.api_secret)
    sheet = write_sheet(tmp_path / "in.csv", 2)
    done = cli("apply", sheet, "--api-url", f"{box.url}/v1", "--reports-dir", tmp_path / "r",
               "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(box.ledger()["creates"]) == 2
