"""The stored connection and group records, and their public (answer) shapes.

A :class:`Connection` keeps what the create/PATCH bodies set, plus the sandbox's own
status. :meth:`Connection.public` renders the object Fivetran returns in ``data``
(``ConnectorResponseV1`` with the ``tiktok_ads`` config): secrets masked as ``******``
and the ``auth`` block never echoed. The sandbox never keeps a secret value: ``auth`` is
stored masked (``stored_auth``; a masked credential still says that one was given, which is
all that setup tests need), and :meth:`Connection.to_record` masks ``config`` secrets too, so
a state file holds none.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

MASK = "******"
SECRET_KEYS = frozenset(
    {
        "access_token",
        "api_key",
        "api_secret",
        "client_id",
        "client_secret",
        "password",
        "private_key",
        "refresh_token",
        "secret",
        "token",
    }
)
SERVICE_VERSION = 1
CONNECT_CARD_BASE = "https://fivetran.com/connect-card/setup"

#: Top-level body fields kept on the connection and echoed back.
SETTING_FIELDS = (
    "paused",
    "pause_after_trial",
    "sync_frequency",
    "daily_sync_time",
    "schedule_type",
    "networking_method",
    "proxy_agent_id",
    "private_link_id",
    "hybrid_deployment_agent_id",
    "data_delay_sensitivity",
    "data_delay_threshold",
    "destination_schema_names",
    "destination_configuration",
    "external_secrets_manager_id",
    "connect_card_config",
)
DEFAULT_SETTINGS: dict[str, Any] = {
    "paused": False,
    "pause_after_trial": False,
    "sync_frequency": 360,
    "daily_sync_time": "00:00",
    "schedule_type": "auto",
    "networking_method": "Directly",
    "data_delay_sensitivity": "NORMAL",
    "data_delay_threshold": 0,
}
TIKTOK_CONFIG_DEFAULTS: dict[str, Any] = {
    "timeframe_months": "THREE",
    "attribution_window_size": "SEVEN",
}


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 with microseconds and a ``Z``, as Fivetran writes timestamps."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mask_secrets(value: Any, *, keep_empty: bool = False) -> Any:
    """A deep copy of ``value`` with every secret-named string replaced by ``******``
    (``keep_empty``: an empty string stays empty, so "none was given" survives masking)."""
    if isinstance(value, dict):
        return {
            key: MASK
            if key in SECRET_KEYS and isinstance(item, str) and (item or not keep_empty)
            else mask_secrets(item, keep_empty=keep_empty)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item, keep_empty=keep_empty) for item in value]
    return value


def stored_auth(auth: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox keeps of an ``auth`` block: its shape, every credential masked."""
    masked: dict[str, Any] = mask_secrets(auth, keep_empty=True)
    return masked


def connect_card_uri(token: str, card_config: dict[str, Any] | None) -> str:
    """The connect-card URL embedding ``token`` (and the redirect settings, when given)."""
    query: dict[str, str] = {"auth": token}
    if card_config:
        if card_config.get("redirect_uri"):
            query["redirect_uri"] = str(card_config["redirect_uri"])
        if card_config.get("hide_setup_guide") is not None:
            query["hide_setup_guide"] = str(bool(card_config["hide_setup_guide"])).lower()
    return f"{CONNECT_CARD_BASE}?{urlencode(query)}"


@dataclass(slots=True)
class Group:
    """A destination group."""

    id: str
    name: str
    created_at: str

    def public(self) -> dict[str, Any]:
        """``GroupResponse``."""
        return {"id": self.id, "name": self.name, "created_at": self.created_at}


@dataclass(slots=True)
class Connection:
    """One stored connection. ``seq`` orders connections by creation."""

    id: str
    seq: int
    group_id: str
    service: str
    schema: str
    created_at: str
    connected_by: str
    settings: dict[str, Any]
    config: dict[str, Any]
    auth: dict[str, Any] = field(default_factory=dict)
    setup_state: str = "incomplete"
    setup_tests: list[dict[str, Any]] | None = None
    _public: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def touch(self) -> None:
        """Drop the cached public shape after a change."""
        self._public = None

    def public(self) -> dict[str, Any]:
        """The ``data`` object Fivetran answers with (cached until :meth:`touch`)."""
        if self._public is None:
            self._public = self._render()
        return self._public

    def _render(self) -> dict[str, Any]:
        settings = {**DEFAULT_SETTINGS, **self.settings}
        paused = bool(settings["paused"])
        data: dict[str, Any] = {
            "id": self.id,
            "group_id": self.group_id,
            "service": self.service,
            "service_version": SERVICE_VERSION,
            "schema": self.schema,
            "connected_by": self.connected_by,
            "created_at": self.created_at,
            "succeeded_at": None,
            "failed_at": None,
        }
        for key in SETTING_FIELDS:
            if settings.get(key) is not None:
                data[key] = copy.deepcopy(settings[key])
        data["status"] = {
            "setup_state": self.setup_state,
            "sync_state": "paused" if paused else "scheduled",
            "update_state": "on_schedule",
            "is_historical_sync": True,
            "tasks": [],
            "warnings": [],
        }
        if self.setup_tests is not None:
            data["setup_tests"] = copy.deepcopy(self.setup_tests)
        data["config"] = mask_secrets(self.config)
        return data

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict of every field (for the SQLite state), secrets masked."""
        record = asdict(self)
        record.pop("_public", None)
        record["auth"] = stored_auth(record["auth"])
        record["config"] = mask_secrets(record["config"], keep_empty=True)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Connection:
        """The inverse of :meth:`to_record`."""
        return cls(**{k: v for k, v in record.items() if k != "_public"})


def passed_setup_tests(service: str) -> list[dict[str, Any]]:
    """The setup-test results of a connection whose credentials work."""
    titles = (
        (
            "Connecting to TikTok Ads API",
            "Validating access token",
            "Validating advertiser accounts",
        )
        if service == "tiktok_ads"
        else ("Connecting to the source", "Validating credentials")
    )
    return [{"title": title, "status": "PASSED", "message": "", "details": {}} for title in titles]
