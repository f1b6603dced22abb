"""What a person must do next: one list, in summary.json and in the closing lines alike."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Outcome, Status
from batch_provisioner.run.invocation import Invocation
from batch_provisioner.run.next_actions import RunEnd, apply_next_actions
from batch_provisioner.sandbox import SandboxHandle
from tests.apply_helpers import cli, csv_rows, write_sheet

HOW = Invocation(sheet=Path("in.csv"), sandbox=True, apply_flags=("--update", "--force"))


def _actions(outcomes: list[Outcome], code: ExitCode = ExitCode.ROWS_FAILED,
             stopped: str | None = None) -> dict[str, dict[str, object]]:
    end = RunEnd("r1", Path("reports/r1"), int(code), stopped=stopped)
    rerun = HOW.rerun(Path("reports/r1/failed_rows.csv"), custom_reports=None,
                      secrets_dir=Path("/data"))
    return {a.kind: a.as_dict() for a in apply_next_actions(outcomes, end, HOW, rerun)}


def test_each_kind_names_its_rows_and_a_command_that_fits_it() -> None:
    actions = _actions([
        Outcome(2, Status.CREATED),
        Outcome(3, Status.INVALID, error_message="sync_mode: not a mode"),
        Outcome(4, Status.FAILED, retriable=True),
        Outcome(5, Status.CONFLICT, error_message="fixed at creation, can't change: schema"),
        Outcome(6, Status.CREATED, connect_card_uri="https://fivetran.example/card"),
        Outcome(7, Status.FAILED, retriable=False)])
    assert list(actions) == ["fix_rows", "retry_rows", "resume", "conflicts", "connect_cards"]
    assert actions["fix_rows"]["rows"] == [3, 7] and actions["fix_rows"]["count"] == 2
    rerun = shlex.split(str(actions["fix_rows"]["command"]))
    # a new run of failed_rows.csv: --force belongs to the run it was given to, --update stays
    assert rerun[:3] == ["batch-provisioner", "apply", "reports/r1/failed_rows.csv"]
    assert rerun[rerun.index("--secrets-dir") + 1] == "/data"
    assert "--update" in rerun and "--force" not in rerun
    assert actions["resume"]["command"] == ("batch-provisioner apply in.csv --resume r1 "
                                            "--sandbox --update --force")
    assert actions["resume"]["rows"] == [4]
    assert actions["conflicts"]["rows"] == [5]
    assert str(actions["conflicts"]["command"]).startswith("batch-provisioner plan in.csv")
    assert actions["connect_cards"]["command"] == "batch-provisioner connect-cards r1 --sandbox"
    assert "status" not in actions  # rows are left: a status line would say all is done


def test_a_finished_run_points_to_status_and_counts_agree_in_the_singular() -> None:
    actions = _actions([Outcome(2, Status.CREATED)], ExitCode.OK)
    assert list(actions) == ["status"]
    one = _actions([Outcome(2, Status.INVALID)])
    assert str(one["fix_rows"]["message"]).startswith("1 row to fix,")


def test_a_stopped_run_leads_with_its_reason_and_the_resume_command() -> None:
    actions = _actions([Outcome(2, Status.CREATED), Outcome(3, Status.NOT_ATTEMPTED)],
                       ExitCode.INTERRUPTED, stopped="the deadline (45m) passed")
    assert list(actions) == ["resume"]
    assert actions["resume"]["message"] == "stopped: the deadline (45m) passed"
    assert actions["resume"]["rows"] == [3]


def test_summary_json_holds_the_actions_the_closing_lines_print(
        tmp_path: Path, box: SandboxHandle) -> None:
    box.reset()
    sheet = write_sheet(tmp_path / "in.csv", 4, connect_card_every=4)
    text = sheet.read_text().splitlines()
    text[3] = text[3].replace("AllAccounts", "AllAcounts")  # row 4 is invalid
    sheet.write_text("\n".join(text) + "\n")
    done = cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", tmp_path / "r",
               "--run-id", "na")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "r" / "na" / "summary.json").read_text())
    kinds = [a["kind"] for a in summary["next_actions"]]
    assert kinds == ["fix_rows", "connect_cards"]
    assert summary["next_actions"][0]["rows"] == [4]
    printed = [line.removeprefix("next: ").split("   #")[0] for line in done.stdout.splitlines()
               if line.startswith("next: ")]
    assert printed == [a["command"] for a in summary["next_actions"]]


def test_status_drops_the_clients_who_have_authorised_from_the_next_actions(
        tmp_path: Path, box: SandboxHandle) -> None:
    box.reset()
    sheet = write_sheet(tmp_path / "in.csv", 4, connect_card_every=2)  # rows 2 and 4: cards
    reports = tmp_path / "r"
    assert cli("apply", sheet, "--sandbox-url", box.url, "--reports-dir", reports,
               "--run-id", "st").returncode == 0
    path = reports / "st" / "summary.json"
    cards = next(a for a in json.loads(path.read_text())["next_actions"]
                 if a["kind"] == "connect_cards")
    assert cards["rows"] == [2, 4]
    ids = {r["source_row"]: r["connection_id"] for r in csv_rows(reports / "st" / "results.csv")}
    box.authorize(ids["2"])
    done = cli("status", "st", "--sandbox-url", box.url, "--reports-dir", reports)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    cards = next(a for a in json.loads(path.read_text())["next_actions"]
                 if a["kind"] == "connect_cards")
    assert cards["rows"] == [4] and cards["message"].startswith("1 connect-card row waits")
    box.authorize(ids["4"])
    cli("status", "st", "--sandbox-url", box.url, "--reports-dir", reports)
    kinds = [a["kind"] for a in json.loads(path.read_text())["next_actions"]]
    assert "connect_cards" not in kinds
