"""Fivetran-looking identifiers: ``adjective_noun`` connection ids and connect-card tokens."""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from collections.abc import Container

_ADJECTIVE_WORDS = (
    "able amber ample azure bold brave brisk calm candid cheery chief civic clever cosmic "
    "crisp cubic dainty dapper deft eager early easy elated epic equal even fair famous "
    "fancy fervent festive fluent fond formal fresh frugal gentle giddy glad golden grand "
    "happy hardy hasty hearty honest humble ideal jolly jovial keen kind lavish lively "
    "loyal lucid lucky merry mild modest nimble noble novel oaken opal placid plucky polite "
    "proud quick quiet rapid rare ready regal robust rosy royal rustic sage shiny silent "
    "sleek smart snowy solar solid spry stable steady sunny swift tidy timely tranquil "
    "trusty upbeat urban valid vast vivid warm wholly wise witty young zesty"
)

_NOUN_WORDS = (
    "acorn alloy anchor apple arrow aspen atlas badge basin beacon birch bison blossom "
    "boulder breeze brook canyon cedar cello cider cliff clover comet coral cotton crane "
    "crater dawn delta dune eagle echo ember falcon fern fjord flint forest fortune "
    "fountain galaxy garnet geyser glacier grove harbor hazel heron horizon island ivory "
    "jasper juniper kernel lagoon lantern lark lotus maple meadow meteor mist moss nebula "
    "oasis orbit orchid otter pebble pepper pine planet plume prairie quartz quasar raven "
    "reef ridge river robin saffron sail sequoia shore sierra spruce summit thistle thunder "
    "tide timber topaz tulip tundra valley velvet willow wren zephyr"
)
_ADJECTIVES = tuple(_ADJECTIVE_WORDS.split())
_NOUNS = tuple(_NOUN_WORDS.split())


def new_connection_id(rng: random.Random, taken: Container[str]) -> str:
    """A fresh ``adjective_noun`` id not in ``taken`` (a numeric suffix once pairs run low)."""
    for attempt in range(64):
        candidate = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if attempt >= 8:
            candidate += str(rng.randrange(10, 100_000))
        if candidate not in taken:
            return candidate
    while True:  # pragma: no cover - practically unreachable
        candidate = f"sandbox_{secrets.token_hex(6)}"
        if candidate not in taken:
            return candidate


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_connect_card_token(connection_id: str, group_id: str, *, ttl_seconds: int = 86_400) -> str:
    """A JWT-shaped token for a connect card (valid for about one day, like Fivetran's)."""
    now = int(time.time())
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    claims = {
        "d": {"connector": connection_id, "group": group_id},
        "iat": now,
        "exp": now + ttl_seconds,
    }
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"
