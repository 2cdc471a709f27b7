"""A real Prometheus (Debian package ``prometheus``) on a free loopback port with its own config and
storage directory, scraping the given targets every ``scrape_interval_s``; ``query()`` reads back
through its HTTP query API (``/api/v1/query``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hil import child_process
from hil.embedded_broker import free_port


class PrometheusNotFound(RuntimeError):
    """The prometheus binary is not installed (Debian: ``apt-get install -y prometheus``)."""


def prometheus_binary() -> str:
    for candidate in (shutil.which("prometheus"), "/usr/bin/prometheus"):
        if candidate and Path(candidate).exists():
            return candidate
    raise PrometheusNotFound("prometheus is not installed: apt-get install -y prometheus")


class PrometheusServer:
    """``with PrometheusServer(workdir, {"flightd": ["127.0.0.1:9470"]}) as prom: prom.query("up")``."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]], scrape_interval_s: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.port = free_port()
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}",
                 "scrape_configs:"]
        for job, addresses in self.targets.items():
            lines += [f"  - job_name: {json.dumps(job)}", "    static_configs:",
                      f"      - targets: {json.dumps(addresses)}"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 30.0) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready on port {self.port} within {timeout_s} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now: ``[{"metric": {...}, "value": [t, "v"]}]``.
        Raises RuntimeError when Prometheus answers with an error."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        child_process.stop(self.proc, 10.0)
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
