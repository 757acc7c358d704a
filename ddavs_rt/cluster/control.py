"""The named Dask objects one run shares with its shards, on the scheduler.

    ddavs-<job>-stop               Event: the submitter asks every shard to stop
    ddavs-<job>-beat               Variable: a counter the submitter raises every second; a shard
                                   whose counter has not moved for `lease_s` stops (its submitter
                                   is gone: nobody would read what it publishes)
    ddavs-<job>-epoch-<shard>      Variable: how many times the shard has started, minus one;
                                   each start takes the next value and stamps it in every header
    ddavs-<job>-status-<shard>     Variable: the shard's latest report (JSON: worker, epoch,
                                   per-stream health, Prometheus text), written every second
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from distributed import Client, Event, Variable


@dataclass(frozen=True, slots=True)
class JobNames:
    job: str

    @classmethod
    def fresh(cls) -> "JobNames":
        return cls(uuid.uuid4().hex[:12])

    @property
    def stop(self) -> str:
        return f"ddavs-{self.job}-stop"

    @property
    def beat(self) -> str:
        return f"ddavs-{self.job}-beat"

    def epoch(self, shard: int) -> str:
        return f"ddavs-{self.job}-epoch-{shard}"

    def status(self, shard: int) -> str:
        return f"ddavs-{self.job}-status-{shard}"


def take_epoch(client: Client, names: JobNames, shard: int) -> int:
    """The next epoch of `shard` (0 on its first start). Two starts of one shard never overlap
    (a shard runs again only once Dask has declared its worker lost), so read-then-set suffices."""
    variable = Variable(names.epoch(shard), client=client)
    epoch = int(variable.get(timeout=30)) + 1
    variable.set(epoch)
    return epoch


def read_status(client: Client, names: JobNames, shard: int) -> dict | None:
    """The shard's latest report, or None before its first one (the submitter sets "" first)."""
    text = Variable(names.status(shard), client=client).get(timeout=5)
    return json.loads(text) if text else None


def stop_event(client: Client, names: JobNames) -> Event:
    return Event(names.stop, client=client)
