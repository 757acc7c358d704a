"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1.

Every process binds 127.0.0.1 (its comm port, and the HTTP port it opens even without a
dashboard: `--dashboard-address 127.0.0.1:0`, or Dask would listen on every interface) and is
ended by its PID. Workers run without a nanny, so killing a worker's PID kills the worker itself (a nanny would start it again).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.rtsp_server import free_port


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[2]} exited with {process.returncode}: {log.read_text()[-1500:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.args[2]} did not listen on {port} within {timeout:.0f} s: {log.read_text()[-1500:]}")


def listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP sockets `pid` listens on (from `ss -ltnpH`)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


class DaskCluster:
    """`start()` a scheduler and `workers` workers; `kill_worker(i)`; `stop()` ends the rest."""

    def __init__(self, folder: Path, workers: int = 2, threads: int = 3, resources: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.scheduler_port = free_port()
        self.worker_ports = [free_port() for _ in range(workers)]
        self.threads = threads
        self.resources = resources  # e.g. "GPU=2": what each worker advertises
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = []

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.scheduler_port}"

    def worker_address(self, i: int) -> str:
        return f"tcp://127.0.0.1:{self.worker_ports[i]}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)

    def start(self, timeout: float = 90.0) -> None:
        http = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        self.scheduler = self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                                   "--port", str(self.scheduler_port), *http])
        _wait_for_port(self.scheduler_port, self.scheduler, timeout, self.folder / "scheduler.log")
        for i, port in enumerate(self.worker_ports):
            self.workers.append(self._spawn(f"worker{i}", [
                "distributed.cli.dask_worker", self.address, "--host", "127.0.0.1", "--worker-port", str(port),
                "--no-nanny", "--nthreads", str(self.threads), "--name", f"w{i}", *http,
                *(["--resources", self.resources] if self.resources else [])]))
        for i, port in enumerate(self.worker_ports):
            _wait_for_port(port, self.workers[i], timeout, self.folder / f"worker{i}.log")

    def pids(self) -> list[int]:
        return [p.pid for p in [self.scheduler, *self.workers] if p is not None and p.poll() is None]

    def kill_worker(self, i: int) -> None:
        process = self.workers[i]
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.workers[i] = None

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.scheduler]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        self.workers, self.scheduler = [], None
