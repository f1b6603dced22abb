"""The client sends through httpx's transports directly: the same request bytes, proxies from
the environment as httpx's client would use them."""

from __future__ import annotations

import base64

import httpx
import pytest

from batch_provisioner.api.client import FivetranClient, _proxy_for
from batch_provisioner.settings import ApiCredentials, ClientSettings


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
                 "http_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _proxy_for("https://api.fivetran.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    proxy = _proxy_for("https://api.fivetran.com")
    assert proxy is not None and proxy.url == httpx.URL("http://proxy.corp:3128")
    assert _proxy_for("http://127.0.0.1:8080") is None  # HTTPS_PROXY is for https only
    monkeypatch.setenv("NO_PROXY", "api.fivetran.com")
    assert _proxy_for("https://api.fivetran.com") is None


@pytest.mark.anyio
async def test_a_request_carries_basic_auth_accept_and_json_as_httpx_would() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": "Success", "data": {"items": []}})

    credentials = ApiCredentials("key-1234", "secret-5678", "https://api.example/v1/")
    async with FivetranClient(credentials, ClientSettings(concurrency=2),
                              transport=httpx.MockTransport(answer)) as client:
        await client.list_connections("g1", schema="tt_1")
        await client.create_connection({"group_id": "g1", "config": {"schema": "tt_2"}})
    get, post = seen
    assert str(get.url) == "https://api.example/v1/connections?group_id=g1&schema=tt_1&limit=1000"
    expected = "Basic " + base64.b64encode(b"key-1234:secret-5678").decode()
    assert get.headers["authorization"] == post.headers["authorization"] == expected
    assert get.headers["accept"] == "application/json;version=2"
    assert post.headers["content-type"] == "application/json"
    assert post.headers["host"] == "api.example"
    assert post.content == httpx.Request("POST", "https://x", json={
        "group_id": "g1", "config": {"schema": "tt_2"}}).content
