"""The last lines of every command: what happened, and the next command to run.

Each command ends with ``next: ...`` lines a person can paste: the resume command after exit 4,
the cause and what to check after exit 3, the failed-rows file only when rows failed, the
connect-cards command when clients must act. The commands are rebuilt from the flags the
command was given (quoted for a POSIX shell), so they work as printed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from batch_provisioner.api.edge import shown_url
from batch_provisioner.cli.common import plain_err, plain_out, shown
from batch_provisioner.errors import ExitCode
from batch_provisioner.models import Status, counted

PROG = "batch-provisioner"
_DEFAULT_REPORTS = Path("reports")


@dataclass(frozen=True)
class Invocation:
    """The flags a next command must repeat: the input files and where requests went."""

    sheet: Path | None = None
    defaults: Path | None = None
    custom_reports: Path | None = None
    sheet_name: str | None = None
    secrets_dir: Path | None = None
    reports_dir: Path = _DEFAULT_REPORTS
    api_url: str | None = None
    sandbox: bool = False
    sandbox_url: str | None = None
    sandbox_groups: Path | None = None
    sandbox_profile: str | None = None
    #: Flags that change what ``apply`` does (``--update``, ``--force``, budgets, timeouts):
    #: a resume command repeats them, or it would do something else.
    apply_flags: tuple[str, ...] = field(default=())

    def inputs(self) -> list[str]:
        words: list[str] = []
        if self.sheet is not None:
            words.append(str(self.sheet))
        for flag, value in (("--defaults", self.defaults),
                            ("--custom-reports", self.custom_reports),
                            ("--sheet", self.sheet_name), ("--secrets-dir", self.secrets_dir)):
            if value is not None:
                words += [flag, str(value)]
        return words

    def target(self, *, rehearsal: bool = True) -> list[str]:
        """The target flags; ``rehearsal``: also the embedded sandbox's seeding flags."""
        words: list[str] = []
        if self.sandbox:
            words.append("--sandbox")
            if rehearsal and self.sandbox_groups is not None:
                words += ["--sandbox-groups", str(self.sandbox_groups)]
            if rehearsal and self.sandbox_profile:
                words += ["--sandbox-profile", self.sandbox_profile]
        elif self.sandbox_url:
            words += ["--sandbox-url", shown_url(self.sandbox_url)]
        elif self.api_url:  # credentials come from the env, never from a URL: none shown
            words += ["--api-url", shown_url(self.api_url)]
        return words

    def reports(self) -> list[str]:
        if Path(self.reports_dir) == _DEFAULT_REPORTS:
            return []
        return ["--reports-dir", str(self.reports_dir)]

    def command(self, name: str, *words: str, inputs: bool = True,
                rehearsal: bool = True) -> str:
        parts = [PROG, name, *(self.inputs() if inputs else []), *words,
                 *self.target(rehearsal=rehearsal), *self.reports(),
                 *(self.apply_flags if name == "apply" else ())]
        return " ".join(shlex.quote(p) for p in parts)


def say(line: str) -> None:
    plain_out.print(shown(line, 4_000))


def say_next(command: str, why: str | None = None) -> None:
    say(f"next: {command}" + (f"   # {why}" if why else ""))


def apply_closing(result_counts: dict[str, int], exit_code: int, run_id: str,
                  paths: dict[str, Path], how: Invocation, *, fatal: str | None,
                  stopped: str | None, cards_waiting: int, to_fix: int = 0,
                  to_retry: int = 0) -> None:
    """The closing lines of ``apply``. ``to_fix``: rows invalid or failed for a reason of
    their own (a person must change them); ``to_retry``: failed rows a resume tries again."""
    waiting = result_counts.get(str(Status.NOT_ATTEMPTED), 0)
    code = int(exit_code)
    if code == ExitCode.INTERNAL:  # a bug stopped the run: nothing new was sent
        log = paths["results.csv"].parent / "run.log.jsonl" if "results.csv" in paths else None
        plain_err.print(shown(f"internal error: {stopped or 'see run.log.jsonl'}; please report "
                              f"it, with {log or 'run.log.jsonl'}", 2_000))
    elif code == ExitCode.FATAL_API and fatal:
        plain_err.print(shown(f"error: {fatal}", 2_000))
    elif code == ExitCode.INTERRUPTED and stopped:
        say(f"stopped: {stopped}")
    if to_fix:
        them = "it" if to_fix == 1 else "them"
        say(f"{counted(to_fix, 'row')} to fix, each with its error in "
            f"{paths['failed_rows.csv']}: fix {them} in the sheet, then apply --resume "
            f"{run_id} --force (the sheet changed), or fix that file and apply it as a new run")
    if to_retry:
        say(f"{counted(to_retry, 'row')} failed for a reason that may pass (the API, the "
            f"network): a resume tries {'it' if to_retry == 1 else 'them'} again")
    if cards_waiting:
        say(f"{counted(cards_waiting, 'connect-card row')} "
            f"{'waits for its client' if cards_waiting == 1 else 'wait for their clients'}: "
            "send each client its link (connect_card_uri in results.csv)")
        say_next(how.command("connect-cards", run_id, inputs=False, rehearsal=False),
                 "fresh links, once clients act or links expire")
    if code == ExitCode.INTERNAL:
        say(f"{counted(waiting, 'row')} {_were(waiting)} not attempted; once a fixed version "
            f"is installed, {how.command('apply', '--resume', run_id)} carries on")
    elif code == ExitCode.FATAL_API:
        say_next(how.command("apply", "--resume", run_id),
                 f"after fixing the cause; {counted(waiting, 'row')} {_were(waiting)} not "
                 "attempted")
    elif waiting or to_retry:
        if waiting and not stopped:
            say(f"{counted(waiting, 'row')} {_were(waiting)} held back (--rows / --limit, or "
                "not confirmed)")
        say_next(how.command("apply", "--resume", run_id),
                 f"carries on with the {counted(waiting + to_retry, 'row')} not done")
    elif code == ExitCode.OK:
        say_next(how.command("status", run_id, inputs=False, rehearsal=False),
                 "setup state of every connection")
    say_exit(code)


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def exit_label(code: int) -> str:
    """The name of an exit code, as ``--help`` and the README's table give it: ``ok``,
    ``rows_failed``, ``input_error``, ``fatal_api``, ``interrupted``, ``changes_pending``,
    ``internal`` (``errors.ExitCode``)."""
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return "unknown"


def say_exit(code: int) -> None:
    """A command's last line: ``exit code 1 (rows_failed)``."""
    say(f"exit code {int(code)} ({exit_label(int(code))})")
