"""Shared helpers for the tests that read inputs from S3: moto's S3 server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

AWS_SECRET = "aws-secret-6d1f8b3e9a2c7d4e-never"


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_bucket(endpoint: str, bucket: str) -> Any:
    """A botocore S3 client of the emulator, with ``bucket`` made."""
    import botocore.session

    client = botocore.session.Session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key=AWS_SECRET)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    return client


def aws_env(endpoint: str | None, folder: Path) -> dict[str, str]:
    """AWS settings that reach the emulator and nothing else: its keys, its endpoint, no
    config files (``folder`` holds none), no instance metadata, no proxy for loopback."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
           "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
           "NO_PROXY": "127.0.0.1,localhost"}
    return {**env, "AWS_ENDPOINT_URL": endpoint} if endpoint else env
