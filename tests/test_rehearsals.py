"""Rehearsals with teeth: a sandbox seeded with the account's real groups (``--sandbox-groups``),
a chosen profile (``--sandbox-profile``), the ``groups`` command that exports them, the target
flags that contradict each other (exit 2, nothing written), and explicit budgets that win over
the ones a sandbox announces."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import batch_provisioner as bp
from batch_provisioner import cli as cli_app
from batch_provisioner.errors import ExitCode, InputError
from batch_provisioner.models import Status
from batch_provisioner.run.target import SHEET_GROUPS_NOTICE
from batch_provisioner.sandbox import DEFAULT_GROUPS, run_in_thread
from batch_provisioner.sheet.groups_file import read_groups_file
from tests.apply_helpers import ENV, GROUPS, cli, csv_rows, write_dict_rows, write_sheet

NAMED = ["group_name", "schema", "sync_mode", "sync_frequency", "access_token"]
REAL_GROUPS = "id,name\ngrp_acme_01,Acme Retail\ngrp_blue_02,Blue Fin Media\n"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sheets' ``env:TT_TOKEN`` for the library calls made in this process."""
    monkeypatch.setenv("TT_TOKEN", ENV["TT_TOKEN"])


def _typo_sheet(path: Path) -> Path:
    """One row naming a real group, one naming it with a typo."""
    return write_dict_rows(path, [{"group_name": "Acme Retail", "schema": "tt_ok"},
                                  {"group_name": "Acme Retial", "schema": "tt_typo"}], NAMED)


def _real_groups(path: Path) -> Path:
    path.write_text(REAL_GROUPS, encoding="utf-8")
    return path


def _listed(reports: Path) -> list[dict[str, str]]:
    """Every connection the rehearsal's saved sandbox state holds."""
    with run_in_thread(state_path=reports / "sandbox" / "state.sqlite", groups={}) as later:
        answer = httpx.get(f"{later.url}/v1/connections", auth=later.auth,
                           params={"limit": "1000"}).json()
    return [{"group_id": c["group_id"], "schema": c["schema"]} for c in answer["data"]["items"]]


def test_a_group_name_typo_is_invalid_with_sandbox_groups_and_nothing_is_created_for_it(
        tmp_path: Path) -> None:
    sheet, groups = _typo_sheet(tmp_path / "in.csv"), _real_groups(tmp_path / "groups.csv")
    reports = tmp_path / "reports"
    planned = cli("plan", sheet, "--sandbox", "--sandbox-groups", groups,
                  "--reports-dir", reports, "--run-id", "p")
    assert planned.returncode == ExitCode.ROWS_FAILED, planned.stdout + planned.stderr
    plan = {r["schema"]: r for r in csv_rows(reports / "p" / "plan.csv")}
    assert plan["tt_ok"]["action"] == "create" and plan["tt_ok"]["group_id"] == "grp_acme_01"
    assert plan["tt_typo"]["action"] == "invalid"
    assert "no group is named 'Acme Retial'" in plan["tt_typo"]["detail"]
    assert "seeded the sheet's" not in planned.stderr

    applied = cli("apply", sheet, "--sandbox", "--sandbox-groups", groups,
                  "--reports-dir", reports, "--run-id", "a")
    assert applied.returncode == ExitCode.ROWS_FAILED, applied.stdout + applied.stderr
    results = {r["schema"]: r for r in csv_rows(reports / "a" / "results.csv")}
    assert results["tt_ok"]["status"] == "created"
    # apply reports an unknown group_name as a failed row (as against Fivetran), never sent
    assert results["tt_typo"]["status"] == "failed"
    assert results["tt_typo"]["error_code"] == "NotFound_Group"
    assert results["tt_typo"]["connection_id"] == ""
    assert _listed(reports) == [{"group_id": "grp_acme_01", "schema": "tt_ok"}]


def test_the_sandbox_seeds_exactly_the_file_groups_no_demo_defaults(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "in.csv", 2, groups=("decent_dropsy",))  # a demo group
    result = bp.plan(sheet, sandbox=True, sandbox_groups=_real_groups(tmp_path / "g.csv"),
                     reports_dir=tmp_path / "reports", run_id="p")
    assert result.counts == {"invalid": 2}
    assert "does not exist" in result.frame["detail"][0]


def test_without_sandbox_groups_the_sandbox_says_in_one_line_it_seeded_the_sheet_groups(
        tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    planned = cli("plan", _typo_sheet(tmp_path / "in.csv"), "--sandbox",
                  "--reports-dir", reports, "--run-id", "p")
    assert planned.returncode == 5, planned.stdout + planned.stderr  # the typo is planned
    notice = SHEET_GROUPS_NOTICE.format(groups="2 groups")
    lines = [line for line in planned.stderr.splitlines() if "seeded the sheet's" in line]
    assert lines == [f"warning: {notice}"]
    assert "--sandbox-groups FILE (batch-provisioner groups --out FILE)" in notice
    assert {r["action"] for r in csv_rows(reports / "p" / "plan.csv")} == {"create"}


def test_groups_out_file_round_trips_into_apply_sandbox_groups(tmp_path: Path) -> None:
    reports, exported = tmp_path / "reports", tmp_path / "groups.csv"
    listed = cli("groups", "--sandbox", "--reports-dir", reports, "--out", exported)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "3 groups; written to" in listed.stdout
    assert all(gid in listed.stdout and name in listed.stdout
               for gid, name in DEFAULT_GROUPS.items())
    assert exported.read_text(encoding="utf-8").splitlines()[0] == "id,name"
    assert read_groups_file(exported) == DEFAULT_GROUPS

    sheet = write_sheet(tmp_path / "in.csv", 6, groups=GROUPS)
    applied = cli("apply", sheet, "--sandbox", "--sandbox-groups", exported,
                  "--reports-dir", reports, "--run-id", "a")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {r["status"] for r in csv_rows(reports / "a" / "results.csv")} == {"created"}


def test_groups_file_keeps_formula_like_names_inert_and_reads_them_back_unchanged(
        tmp_path: Path) -> None:
    hostile = {"grp_eq": "=HYPERLINK(\"http://evil\")", "-leading_dash": "-1+2",
               "grp_at": "@SUM(A1)", "grp_plain": 'Café, "Quoted" & Co'}
    with bp.Sandbox(groups=hostile) as box:
        result = bp.groups(target=box.target, out=tmp_path / "g.csv")
    assert result.as_dict() == hostile and result.exit_code is ExitCode.OK
    text = result.paths["groups.csv"].read_text(encoding="utf-8")
    assert "\n'-leading_dash,'-1+2\n" in text and "'=HYPERLINK" in text and "'@SUM" in text
    assert read_groups_file(tmp_path / "g.csv") == hostile


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "file not found"),
    ("group,label\ngrp_1,One\n", "needs the columns id,name"),
    ("id,name\n", "holds no groups"),
    ("", "the file is empty"),
    ("id,name\ngrp_1,One\ngrp_2,Two\ngrp_1,Again\n", "row 4, column 'id': group id 'grp_1' is "
                                                    "also on row 2"),
    ("group_id,group_name\ngrp_1,One\ngrp 2,Two\n", "row 3, column 'group_id': 'grp 2' is not "
                                                   "a Fivetran group id"),
    ("id,name\ngrp/1,One\n", "row 2, column 'id': 'grp/1' is not a Fivetran group id"),
    ("id,name\ngrp_1,\n", "row 2, column 'name': group 'grp_1' has no name"),
])
def test_a_bad_groups_file_is_an_input_error_naming_the_file_and_row(
        tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "groups.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_groups_file(path)
    assert str(path) in caught.value.message and fragment in caught.value.message


def test_a_bad_groups_file_exits_2_before_anything_is_written(tmp_path: Path) -> None:
    groups = tmp_path / "groups.csv"
    groups.write_text("id,name\nbad id,One\n", encoding="utf-8")
    reports = tmp_path / "reports"
    done = cli("apply", write_sheet(tmp_path / "in.csv", 2), "--sandbox",
               "--sandbox-groups", groups, "--reports-dir", reports)
    assert done.returncode == ExitCode.INPUT_ERROR
    assert f"{groups}, row 2, column 'id'" in done.stderr
    assert not reports.exists()


def test_a_saved_sandbox_state_with_other_groups_is_refused_for_a_groups_file(
        tmp_path: Path) -> None:
    reports, sheet = tmp_path / "reports", _typo_sheet(tmp_path / "in.csv")
    assert cli("plan", sheet, "--sandbox", "--reports-dir", reports).returncode == 5
    refused = cli("plan", sheet, "--sandbox", "--sandbox-groups",
                  _real_groups(tmp_path / "g.csv"), "--reports-dir", reports, "--run-id", "r")
    assert refused.returncode == ExitCode.INPUT_ERROR
    assert "acme_retial=Acme Retial" in refused.stderr and "fresh --reports-dir" in refused.stderr
    assert not (reports / "r").exists()


def _budgets(summary_path: Path) -> dict[str, tuple[int, float]]:
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return {b["name"]: (b["limit"], b["window_seconds"]) for b in summary["budgets"]}


def test_sandbox_profile_fivetran_is_started_and_its_budgets_adopted(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = cli("apply", write_sheet(tmp_path / "in.csv", 3), "--sandbox", "--sandbox-profile",
               "fivetran", "--reports-dir", reports, "--run-id", "a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(profile fivetran," in done.stderr
    budgets = _budgets(reports / "a" / "summary.json")
    assert budgets["calls_per_hour"] == (20_000, 3600.0)  # fast would be 60 s windows
    assert budgets["creates_per_minute"] == (20, 60.0)
    adopted = [json.loads(line) for line in (reports / "a" / "run.log.jsonl").read_text(
        encoding="utf-8").splitlines() if '"budget.adopted"' in line]
    assert adopted and "calls_per_hour=20000/3600.0s" in adopted[0]["budgets"]


def test_the_default_profile_stays_fast(tmp_path: Path) -> None:
    result = bp.apply(write_sheet(tmp_path / "in.csv", 2), sandbox=True, run_id="a",
                      reports_dir=tmp_path / "reports")
    assert [o.status for o in result.outcomes] == [Status.CREATED] * 2
    assert _budgets(result.paths["summary.json"])["calls_per_hour"] == (20_000, 60.0)


def test_an_explicit_creates_per_minute_wins_over_the_sandbox_budget(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = cli("apply", write_sheet(tmp_path / "in.csv", 3), "--sandbox",
               "--creates-per-minute", "5", "--reports-dir", reports, "--run-id", "a")
    assert done.returncode == 0, done.stdout + done.stderr
    budgets = _budgets(reports / "a" / "summary.json")
    assert budgets["creates_per_minute"] == (5, 60.0)  # not the sandbox's 20 per fast second
    assert budgets["calls_per_hour"] == (20_000, 60.0)  # the others are still the sandbox's


def test_an_explicit_zero_turns_an_announced_budget_off(tmp_path: Path) -> None:
    with bp.Sandbox() as box:
        result = bp.apply(write_sheet(tmp_path / "in.csv", 2), target=box.target,
                          reports_dir=tmp_path / "reports", run_id="a",
                          limits=bp.Limits(creates_per_minute=0, calls_per_hour=900))
    budgets = _budgets(result.paths["summary.json"])
    assert "creates_per_minute" not in budgets
    assert budgets["calls_per_hour"] == (900, 3600.0)


@pytest.mark.parametrize("args", [
    ["apply", "x.csv", "--sandbox", "--sandbox-url", "http://127.0.0.1:9"],
    ["apply", "x.csv", "--sandbox", "--api-url", "http://127.0.0.1:9"],
    ["apply", "x.csv", "--sandbox-url", "http://127.0.0.1:9", "--api-url", "http://127.0.0.1:9"],
    ["apply", "x.csv", "--sandbox-groups", "g.csv"],
    ["apply", "x.csv", "--sandbox-profile", "fivetran"],
    ["apply", "x.csv", "--sandbox-url", "http://127.0.0.1:9", "--sandbox-profile", "fast"],
    ["plan", "x.csv", "--sandbox", "--api-url", "http://127.0.0.1:9"],
    ["plan", "x.csv", "--sandbox-groups", "g.csv", "--api-url", "http://127.0.0.1:9"],
    ["plan", "x.csv", "--sandbox-profile", "unlimited"],
    ["status", "run", "--sandbox", "--api-url", "http://127.0.0.1:9"],
    ["connect-cards", "run", "--sandbox", "--sandbox-url", "http://127.0.0.1:9"],
    ["rollback", "run", "--yes", "--sandbox-url", "http://127.0.0.1:9", "--api-url", "http://x"],
    ["groups", "--sandbox", "--api-url", "http://127.0.0.1:9"],
    ["groups", "--sandbox", "--sandbox-url", "http://127.0.0.1:9"],
])
def test_contradicting_target_flags_exit_2_and_write_nothing(
        tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_sheet(tmp_path / "x.csv", 2)
    (tmp_path / "run").mkdir()
    _real_groups(tmp_path / "g.csv")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as caught:
        cli_app.main([*args, "--reports-dir", str(tmp_path)])
    stderr = capsys.readouterr().err
    assert caught.value.code == ExitCode.INPUT_ERROR, stderr
    # (earlier in-process sandboxes registered their credential "sandbox" with the redactor)
    assert stderr.startswith("error: --") and "internal error" not in stderr
    assert "give one of" in stderr or "configures the embedded" in stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_library_takes_the_groups_themselves_and_checks_the_flags(tmp_path: Path) -> None:
    sheet = _typo_sheet(tmp_path / "in.csv")
    result = bp.plan(sheet, sandbox=True, sandbox_groups={"grp_1": "Acme Retail"},
                     sandbox_profile="unlimited", reports_dir=tmp_path / "r", run_id="p")
    assert result.counts == {"create": 1, "invalid": 1}
    with pytest.raises(InputError, match="needs --sandbox"):
        bp.plan(sheet, sandbox_groups={"grp_1": "Acme Retail"}, reports_dir=tmp_path / "r")
    with pytest.raises(InputError, match="unknown sandbox profile 'slow'"):
        bp.plan(sheet, sandbox=True, sandbox_profile="slow", reports_dir=tmp_path / "r")
    assert {"groups", "groups_async", "GroupsResult", "AccountGroup"} <= set(bp.__all__)
    assert bp.groups.__name__ == "groups" and "sync twin" in (bp.groups.__doc__ or "")


def test_the_usage_error_says_which_flags_clash(tmp_path: Path) -> None:
    done = cli("apply", write_sheet(tmp_path / "in.csv", 2), "--sandbox", "--api-url",
               "http://127.0.0.1:9", "--reports-dir", tmp_path / "reports")
    assert done.returncode == ExitCode.INPUT_ERROR
    assert done.stderr.startswith("error: --sandbox and --api-url each say where requests go; "
                                  "give one of --api-url URL, --sandbox or --sandbox-url URL")
    assert not (tmp_path / "reports").exists()


def test_regression_the_sandbox_default_credentials_do_not_mask_the_word_sandbox() -> None:
    """The sandbox's documented key and secret are "sandbox": registering them as secrets made
    every later message in the process read "--******-url"."""
    import anyio

    from batch_provisioner.api.client import FivetranClient
    from batch_provisioner.safety import REDACTOR
    from batch_provisioner.sandbox.config import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from batch_provisioner.settings import SANDBOX_CREDENTIALS, ApiCredentials

    assert (DEFAULT_API_KEY, DEFAULT_API_SECRET) == SANDBOX_CREDENTIALS

    async def open_one() -> None:
        async with FivetranClient(ApiCredentials("sandbox", "sandbox", "http://127.0.0.1:9")):
            pass

    anyio.run(open_one)
    assert REDACTOR.scrub("check --sandbox-url") == "check --sandbox-url"
