"""``validate``, ``render`` and ``template``: the commands that need no API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import batch_provisioner as bp
from batch_provisioner.cli.closing import Invocation, say, say_next
from batch_provisioner.cli.common import (
    DefaultsOpt,
    JsonOpt,
    QuietOpt,
    ReportsDirOpt,
    ReportsOpt,
    RunIdOpt,
    SecretsDirOpt,
    SheetArg,
    SheetNameOpt,
    err,
    hush,
    out,
    print_carry_notice,
    print_problems,
    shown,
    speak,
)
from batch_provisioner.cli.json_out import emit, json_command, validation_document
from batch_provisioner.errors import ExitCode
from batch_provisioner.report.files import replacing


@json_command("validate")
def validate(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    reports_dir: ReportsDirOpt = Path("reports"), run_id: RunIdOpt = None,
    json_output: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Check every row and list every problem at once. Exit 0 clean, 1 invalid rows, 2 bad file."""
    hush(quiet)
    result = bp.validate(sheet, defaults=defaults, custom_reports=custom_reports,
                         sheet_name=sheet_name, secrets_dir=secrets_dir,
                         reports_dir=reports_dir, run_id=run_id)
    print_carry_notice(result.sheet, out)
    print_problems(result.sheet, out)
    if quiet and result.exit_code:
        speak()
    out.print(shown(f"Problems written to {result.paths['validation.csv']}", 10_000))
    how = Invocation(sheet=sheet, defaults=defaults, custom_reports=custom_reports,
                     sheet_name=sheet_name, secrets_dir=secrets_dir, reports_dir=reports_dir)
    if result.errors:
        say(f"fix the {len(result.invalid_rows)} invalid rows in the sheet (every problem is "
            "listed above and in validation.csv), then validate again")
    else:
        say_next(how.command("plan", "--sandbox"), "rehearse: what apply would do")
    emit(validation_document, result)
    raise typer.Exit(result.exit_code)


def render(
    sheet: SheetArg, defaults: DefaultsOpt = None, custom_reports: ReportsOpt = None,
    sheet_name: SheetNameOpt = None, secrets_dir: SecretsDirOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="JSONL file (default stdout).")]
    = None,
) -> None:
    """Write the payloads as JSON lines, secrets shown as ******. Invalid rows are left out."""
    prepared = bp.load(sheet, defaults=defaults, custom_reports=custom_reports,
                       sheet_name=sheet_name, secrets_dir=secrets_dir)
    lines = (json.dumps(line, ensure_ascii=False) for line in bp.render(prepared))
    if out_file is None:
        for line in lines:
            sys.stdout.write(line + "\n")
    else:  # atomically; a path that cannot be written is exit 2, naming it
        with replacing(out_file) as temporary, temporary.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
    if prepared.invalid:
        print_problems(prepared, err)
    raise typer.Exit(ExitCode.ROWS_FAILED if prepared.error_count else ExitCode.OK)


def template(out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")]
             = Path("input_templates")) -> None:
    """Write the input templates (XLSX, CSV, defaults.toml) generated from the code."""
    for path in bp.write_templates(out_dir):
        out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(render)
    app.command()(template)
