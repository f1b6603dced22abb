"""The command a person pastes next: the flags a later command must repeat.

``Invocation`` holds what a command was given (its input files, where its requests went, the
reports folder, the flags that change what ``apply`` does) and rebuilds any command of the
CLI from it, quoted for a POSIX shell, so that the ``next:`` lines, ``report.html``, the
workbook's Summary sheet and ``--json`` all name commands that work as printed.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from batch_provisioner.api.edge import shown_url
from batch_provisioner.sheet.source import is_url, shown_name

PROG = "batch-provisioner"
_DEFAULT_REPORTS = Path("reports")
#: ``apply`` flags that only mean something for the run they were given to.
_RUN_ONLY_FLAGS = ("--force",)


@dataclass(frozen=True)
class Invocation:
    """The flags a next command must repeat: the input files and where requests went.

    An input file is a path, or a URL as outputs show it (``shown_name``: a signed URL's
    query secrets masked, so that command names the file but needs a fresh link)."""

    sheet: Path | str | None = None
    defaults: Path | str | None = None
    custom_reports: Path | str | None = None
    sheet_name: str | None = None
    secrets_dir: Path | None = None
    reports_dir: Path = _DEFAULT_REPORTS
    api_url: str | None = None
    sandbox: bool = False
    sandbox_url: str | None = None
    sandbox_groups: Path | str | None = None
    sandbox_profile: str | None = None
    #: Flags that change what ``apply`` does (``--update``, ``--force``, budgets, timeouts):
    #: a resume command repeats them, or it would do something else.
    apply_flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        """An input given as text becomes its path, or its URL as shown: a raw signed URL
        never reaches a printed command."""
        for name in ("sheet", "defaults", "custom_reports", "sandbox_groups"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, shown_name(value) if is_url(value)
                                   else Path(value))

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

    def rerun(self, sheet: Path, *, custom_reports: Path | str | None,
              secrets_dir: Path | None) -> Invocation:
        """The same target and flags, reading ``sheet`` (``failed_rows.csv``) as a new run.

        ``custom_reports``: where the original rows' custom reports come from when they were
        a sheet of the workbook; ``secrets_dir``: the folder ``file:`` references were
        allowed in (the original sheet's folder unless ``--secrets-dir`` was given).
        """
        flags = tuple(f for f in self.apply_flags if f not in _RUN_ONLY_FLAGS)
        return dataclasses.replace(
            self, sheet=sheet, sheet_name=None,
            custom_reports=self.custom_reports or custom_reports,
            secrets_dir=self.secrets_dir or secrets_dir, apply_flags=flags)
