"""A local S3-compatible server for the tests (no tests here).

S3Proxy (Apache-2.0, from Maven Central; scripts/setup caches its runnable JAR in
.cache/s3proxy) listens on 127.0.0.1 on a free port and stores objects in a temporary
folder. The session's Spark reaches it through Hadoop's S3A connector (hadoop-aws and the
AWS SDK modules in .cache/s3-jars, on `spark.jars` through `SparkSettings.extra_jars`)
with per-bucket settings, so nothing else the suite does talks to it.

The access key and secret below are the test server's own and open no real store. A real
deployment never writes keys into a configuration file: the platform's default
credential provider chain supplies them (docs/operations.md §2.5).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parent.parent
S3_JARS = Path(os.environ.get("CARBONLAKE_S3_JARS", REPO / ".cache" / "s3-jars"))
S3PROXY_DIR = Path(os.environ.get("CARBONLAKE_S3PROXY", REPO / ".cache" / "s3proxy"))

ACCESS_KEY = "carbonlake-test-key"
SECRET_KEY = "carbonlake-test-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def s3a_jars_cached() -> bool:
    return any(S3_JARS.glob("hadoop-aws-*.jar"))


def s3proxy_jar() -> Path:
    found = sorted(S3PROXY_DIR.glob("s3proxy-*-jar-with-dependencies.jar"))
    if not found:
        raise FileNotFoundError(f"no S3Proxy JAR in {S3PROXY_DIR}: run scripts/setup")
    return found[-1]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("no java on PATH (and JAVA_HOME unset) to run S3Proxy")
    return java


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    """A running S3Proxy: its endpoint, process and log file."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    data: Path

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _request(self, method: str, path: str, *, signed: bool = True) -> tuple[int, bytes]:
        """One request; signed with AWS signature version 2 (which S3Proxy accepts
        beside v4) when `signed`: enough for bucket calls without an SDK."""
        date = email.utils.formatdate(usegmt=True)
        headers = {"Date": date, "Content-Length": "0"}
        if signed:
            to_sign = f"{method}\n\n\n{date}\n{path}".encode()
            digest = hmac.new(SECRET_KEY.encode(), to_sign, hashlib.sha1).digest()
            headers["Authorization"] = f"AWS {ACCESS_KEY}:{base64.b64encode(digest).decode()}"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answers(self) -> bool:
        """True once the server answers an S3 request (a signed bucket listing)."""
        try:
            status, _ = self._request("GET", "/")
        except OSError:
            return False
        return status == 200

    def create_bucket(self, name: str) -> str:
        status, body = self._request("PUT", f"/{name}")
        if status != 200:
            raise RuntimeError(f"S3Proxy did not create bucket {name}: {status} {body[:300]!r}")
        return name

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)


def _launch(root: Path, port: int) -> S3Server:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    properties = root / "s3proxy.properties"
    properties.write_text(
        "\n".join(
            [
                f"s3proxy.endpoint=http://127.0.0.1:{port}",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={ACCESS_KEY}",
                f"s3proxy.credential={SECRET_KEY}",
                "jclouds.provider=filesystem-nio2",
                f"jclouds.filesystem.basedir={data}",
                "",
            ]
        )
    )
    command = [
        _java(),
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # starts faster and compiles less on 2 shared cores
        "-jar",
        str(s3proxy_jar()),
        "--properties",
        str(properties),
    ]
    # The server dies with the test process even if that is killed outright
    # (prctl PR_SET_PDEATHSIG, through util-linux's setpriv where it is installed).
    setpriv = shutil.which("setpriv")
    if setpriv:
        command = [setpriv, "--pdeathsig", "TERM", *command]
    log = root / "s3proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "warn", "JETTY_LOG_LEVEL": "warn"},
        )
    return S3Server("127.0.0.1", port, process, log, data)


def start_s3proxy(root: Path, *, timeout: float = START_TIMEOUT_S) -> S3Server:
    """Start S3Proxy storing under `root`; return once it answers S3 requests.

    A free port is picked by binding port 0; should another process take it before
    S3Proxy binds it, the server exits and is started again on another port (3 tries).
    """
    for _ in range(3):
        server = _launch(root, _free_port())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and server.process.poll() is None:
            if server.answers():
                return server
            time.sleep(0.2)
        exited = server.process.poll() is not None
        server.stop()
        if not exited:
            raise TimeoutError(
                f"S3Proxy did not answer within {timeout:.0f} s; its log:\n{server.log_tail()}"
            )
    raise RuntimeError(f"S3Proxy exited at start three times; its log:\n{server.log_tail()}")


def s3a_bucket_settings(server: S3Server, bucket: str) -> dict[str, str]:
    """Hadoop settings for one bucket on the test server (S3A's per-bucket form,
    fs.s3a.bucket.<name>.<option>): endpoint, path-style access, plain HTTP, the test
    credentials, and bounded retries so that a broken server fails a test quickly."""
    options = {
        "endpoint": server.endpoint,
        "endpoint.region": REGION,
        "path.style.access": "true",
        "connection.ssl.enabled": "false",
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "access.key": ACCESS_KEY,
        "secret.key": SECRET_KEY,
        "attempts.maximum": "3",
        "retry.limit": "3",
        "connection.establish.timeout": "5s",
        "connection.timeout": "60s",
    }
    return {f"fs.s3a.bucket.{bucket}.{key}": value for key, value in options.items()}


def configure_s3a(spark: SparkSession, settings: dict[str, str]) -> None:
    """Put Hadoop settings into the running session's Hadoop configuration.

    `spark.hadoop.*` settings only count when the SparkContext starts, and the suite has
    one session for the whole run; S3A reads its per-bucket settings when it first opens
    that bucket, which no test has done yet.
    """
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    for key, value in settings.items():
        hadoop_conf.set(key, value)


def s3a_available(spark: SparkSession) -> bool:
    """True when the session's JVM can load Hadoop's S3A filesystem."""
    jvm = spark.sparkContext._jvm
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        jvm.java.lang.Class.forName(  # type: ignore[union-attr]
            "org.apache.hadoop.fs.s3a.S3AFileSystem", True, loader
        )
    except Exception:
        return False
    return True
