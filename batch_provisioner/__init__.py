"""batch-provisioner: onboard many TikTok Ads advertiser groups into Fivetran from a sheet.

The library under the CLI. Every command is a function that returns a frozen result (outcomes,
counts, the exit code the CLI would use, the paths of the files written); none prints, exits
or configures logging. Async twins (``apply_async``, ...) serve callers with an event loop::

    import batch_provisioner as bp

    checked = bp.validate("groups.xlsx", defaults="defaults.toml")
    with bp.Sandbox() as sandbox:
        result = bp.apply(checked.sheet, target=sandbox.target, reports_dir="reports")
    print(result.counts, result.exit_code, result.paths["results.csv"])

Names are imported on first use, so ``import batch_provisioner.sandbox`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from batch_provisioner.models import SERVICE
from batch_provisioner.settings import VERSION as __version__

if TYPE_CHECKING:
    from batch_provisioner.errors import (
        ApiError as ApiError,
        ExitCode as ExitCode,
        FatalApiError as FatalApiError,
        InputError as InputError,
        ProvisionerError as ProvisionerError,
        RunStopped as RunStopped,
    )
    from batch_provisioner.models import (
        Outcome as Outcome,
        Status as Status,
    )
    from batch_provisioner.report.template_files import (
        write_templates as write_templates,
    )
    from batch_provisioner.run.commands import (
        apply as apply,
        apply_async as apply_async,
        load as load,
        new_run_id as new_run_id,
        plan as plan,
        plan_async as plan_async,
        render as render,
        select_rows as select_rows,
        validate as validate,
    )
    from batch_provisioner.run.control import (
        RunControl as RunControl,
    )
    from batch_provisioner.run.estimate import (
        Estimate as Estimate,
    )
    from batch_provisioner.run.export import (
        ExportedConnection as ExportedConnection,
        ExportResult as ExportResult,
        export as export,
        export_async as export_async,
    )
    from batch_provisioner.run.groups import (
        groups as groups,
        groups_async as groups_async,
    )
    from batch_provisioner.run.journal import checked_run_id as checked_run_id
    from batch_provisioner.run.operations import (
        connect_cards as connect_cards,
        connect_cards_async as connect_cards_async,
        find_run as find_run,
        find_run_to_resume as find_run_to_resume,
        rollback as rollback,
        rollback_async as rollback_async,
        status as status,
        status_async as status_async,
    )
    from batch_provisioner.run.results import (
        AccountGroup as AccountGroup,
        ApplyResult as ApplyResult,
        ConnectCardsResult as ConnectCardsResult,
        GroupsResult as GroupsResult,
        PlanResult as PlanResult,
        RollbackPlan as RollbackPlan,
        RollbackResult as RollbackResult,
        StatusResult as StatusResult,
        Validation as Validation,
    )
    from batch_provisioner.run.target import (
        Sandbox as Sandbox,
        Target as Target,
    )
    from batch_provisioner.settings import (
        ApiCredentials as ApiCredentials,
        Limits as Limits,
    )
    from batch_provisioner.sheet.load import (
        Prepared as Prepared,
    )

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("apply", "apply_async", "load", "new_run_id", "plan", "plan_async",
                     "render", "select_rows", "validate"), "batch_provisioner.run.commands"),
    **dict.fromkeys(("connect_cards", "connect_cards_async", "find_run", "find_run_to_resume",
                     "rollback",
                     "rollback_async", "status", "status_async"),
                    "batch_provisioner.run.operations"),
    **dict.fromkeys(("AccountGroup", "ApplyResult", "ConnectCardsResult", "GroupsResult",
                     "PlanResult", "RollbackPlan", "RollbackResult", "StatusResult",
                     "Validation"), "batch_provisioner.run.results"),
    **dict.fromkeys(("groups", "groups_async"), "batch_provisioner.run.groups"),
    **dict.fromkeys(("export", "export_async", "ExportResult", "ExportedConnection"),
                    "batch_provisioner.run.export"),
    **dict.fromkeys(("ApiError", "ExitCode", "FatalApiError", "InputError", "ProvisionerError",
                     "RunStopped"), "batch_provisioner.errors"),
    **dict.fromkeys(("Outcome", "Status"), "batch_provisioner.models"),
    **dict.fromkeys(("Sandbox", "Target"), "batch_provisioner.run.target"),
    **dict.fromkeys(("ApiCredentials", "Limits"), "batch_provisioner.settings"),
    "RunControl": "batch_provisioner.run.control",
    "Estimate": "batch_provisioner.run.estimate",
    "Prepared": "batch_provisioner.sheet.load",
    "write_templates": "batch_provisioner.report.template_files",
    "checked_run_id": "batch_provisioner.run.journal",
}

__all__ = ["SERVICE", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batch_provisioner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
