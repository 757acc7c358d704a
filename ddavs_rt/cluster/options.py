"""The cluster flags of `ddavs-rt` and their parsing. Imports nothing of Dask."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from ddavs_rt.errors import DdavsError

_ADDRESS_FORMS = "tcp://HOST:PORT of a running `dask scheduler`, or local:N for N worker processes on this machine"


@dataclass(frozen=True, slots=True)
class DaskAddress:
    """Where the cluster is: a running scheduler (`scheduler`) or a LocalCluster of `local_workers`."""

    scheduler: str | None = None
    local_workers: int | None = None

    @property
    def host(self) -> str:
        if self.scheduler is None:
            return "127.0.0.1"
        return self.scheduler.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")


def parse_address(text: str) -> DaskAddress:
    """'tcp://10.0.0.5:8786' or 'local:2' -> DaskAddress; anything else is one clear line."""
    text = text.strip()
    local = re.fullmatch(r"local:(\d+)", text)
    if local:
        count = int(local.group(1))
        if not 1 <= count <= 256:
            raise DdavsError(f"--dask {text!r}: local:N needs 1 <= N <= 256 worker processes")
        return DaskAddress(local_workers=count)
    remote = re.fullmatch(r"(tcp|tls)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})", text)
    if remote and int(remote.group(3)) <= 65535:
        return DaskAddress(scheduler=text)
    raise DdavsError(f"--dask {text!r} is not an address: use {_ADDRESS_FORMS}")


def parse_resources(text: str | None) -> dict[str, float]:
    """'GPU=1' or 'GPU=1,MEM=2' -> {'GPU': 1.0, ...}: what each shard needs of a worker."""
    if not text:
        return {}
    resources: dict[str, float] = {}
    for item in text.split(","):
        name, sep, amount = item.strip().partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name) or value <= 0:
            raise DdavsError(f"--resources {text!r}: write NAME=AMOUNT[,NAME=AMOUNT], e.g. GPU=1")
        resources[name] = value
    return resources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (needs the `cluster` extra: pip install ddavs-rt[cluster])")
    group.add_argument("--dask", metavar="ADDRESS",
                       help="spread the streams over a Dask cluster: tcp://HOST:8786 of a scheduler, or local:N")
    group.add_argument("--resources", metavar="NAME=N[,...]",
                       help="worker resources each shard needs, e.g. GPU=1 (workers started with --resources GPU=1)")
    group.add_argument("--shards", type=int, metavar="N",
                       help="split the streams into N shards (default: one per worker)")
    group.add_argument("--hop", metavar="ENDPOINT",
                       help="where the shards' publishers connect to this process's proxy "
                            "(default tcp://<this machine's address toward the scheduler>:*)")
    group.add_argument("--engine-threads", type=int, metavar="N", help="CPU threads of each shard's engine")
    group.add_argument("--shard-retries", type=int, default=2, metavar="N",
                       help="times a shard that raised is run again (a lost worker's shard is always "
                            "rescheduled, up to Dask's allowed-failures)")
