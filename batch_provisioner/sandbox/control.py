"""The sandbox-only ``/sandbox`` endpoints (no auth, never faulted, not in the ledger).

* ``GET  /sandbox/health``                        liveness
* ``GET  /sandbox/limits``                        the profile's budgets (shape the job adopts)
* ``GET  /sandbox/ledger[?since=SEQ]``            every /v1 request served, creates, counts
* ``GET  /sandbox/faults`` / ``POST /sandbox/faults``  inspect / script / swap faults
* ``POST /sandbox/reset``                         clear connections, ledger, budget windows
* ``POST /sandbox/usage``                         as if other tools used the budgets:
  ``{"applies_to": "all", "count": N}`` counts N calls now; ``{"clear": true}`` forgets all
* ``POST /sandbox/connections/{id}/authorize``    as if the connect card was completed
"""

from __future__ import annotations

from batch_provisioner.sandbox.faults import ScriptedFault
from batch_provisioner.sandbox.state import SandboxState
from batch_provisioner.sandbox.wire import Reply, Request, Route, Router, error, success


def _bad_request(message: str) -> Reply:
    return error(400, "InvalidInput", message)


class ControlApi:
    """Handlers of the ``/sandbox`` endpoints."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.router = Router(
            [
                Route("/sandbox/health", {"GET": self.health}),
                Route("/sandbox/limits", {"GET": self.limits}),
                Route("/sandbox/ledger", {"GET": self.ledger}),
                Route("/sandbox/faults", {"GET": self.faults, "POST": self.set_faults}),
                Route("/sandbox/reset", {"POST": self.reset}),
                Route("/sandbox/usage", {"POST": self.usage}),
                Route("/sandbox/connections/{id}/authorize", {"POST": self.authorize}),
            ]
        )

    def health(self, request: Request) -> Reply:
        """Liveness and a few facts."""
        store = self.state.store
        return Reply(
            200,
            {
                "status": "ok",
                "profile": self.state.config.profile,
                "connections": len(store),
                "groups": len(store.groups),
            },
        )

    def limits(self, request: Request) -> Reply:
        """The budgets in force."""
        return Reply(200, self.state.limits())

    def ledger(self, request: Request) -> Reply:
        """The ledger; ``since`` pages its ``requests`` part."""
        since = request.query.get("since", "0")
        if not since.isdigit():
            return _bad_request("'since' must be a non-negative integer")
        return Reply(200, self.state.ledger.describe(int(since)))

    def faults(self, request: Request) -> Reply:
        """The fault spec, seed and remaining script."""
        return Reply(200, self.state.faults.describe())

    def set_faults(self, request: Request) -> Reply:
        """``{"clear": true}``, ``{"faults": SPEC, "seed": N}`` and/or ``{"script": [...]}``."""
        if request.json_error or not isinstance(request.json, dict):
            return _bad_request(request.json_error or "body must be a JSON object")
        body, injector = request.json, self.state.faults
        try:
            script = [ScriptedFault.from_json(entry) for entry in body.get("script") or []]
            spec = self.state.fault_spec(body["faults"]) if "faults" in body else injector.spec
        except (ValueError, TypeError, AttributeError) as exc:
            return _bad_request(str(exc))
        seed = body.get("seed", injector.seed)
        if not isinstance(seed, int) or isinstance(seed, bool):
            return _bad_request("'seed' must be an integer")
        if body.get("clear"):
            injector.clear_script()
        if "faults" in body or "seed" in body:
            injector.configure(spec, seed)
        injector.add_script(script)
        return Reply(200, injector.describe())

    def reset(self, request: Request) -> Reply:
        """Clear connections, ledger, budget windows, fault ordinals and scripts."""
        self.state.reset()
        return Reply(200, {"status": "reset"})

    def usage(self, request: Request) -> Reply:
        """Budget use by other tools of the account (``X-Rate-Limit-Remaining`` shows it)."""
        if request.json_error or not isinstance(request.json, dict):
            return _bad_request(request.json_error or "body must be a JSON object")
        body = request.json
        if body.get("clear"):
            self.state.limiter.reset()
            return Reply(200, {"status": "cleared"})
        applies_to, count = body.get("applies_to", "all"), body.get("count")
        if applies_to not in ("all", "create", "setup_test"):
            return _bad_request("'applies_to' must be all, create or setup_test")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _bad_request("'count' must be a non-negative integer")
        return Reply(200, {"applies_to": applies_to,
                           "counted": self.state.limiter.spend(applies_to, count)})

    def authorize(self, request: Request) -> Reply:
        """Mark a connection's setup ``connected``, as a completed connect card would."""
        connection = self.state.store.get(request.params["id"])
        if connection is None:
            return error(
                404,
                "NotFound_Connection",
                f"Connection with id '{request.params['id']}' doesn't exist",
            )
        connection.setup_state = "connected"
        self.state.store.save(connection)
        return success(connection.public(), "Connection has been authorized")
