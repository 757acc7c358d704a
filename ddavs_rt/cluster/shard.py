"""One shard: the ordinary runtime for a few of the site's streams, run as one Dask task.

`run_shard(spec)` runs on a worker until the submitter sets the stop event, its heartbeat goes
quiet, the duration passes or every stream has ended. It takes the shard's next epoch, opens the
engine, publishes through a `HopPublisher` connected to the submitter's proxy, and every second
writes a status report (health and Prometheus text) to a Dask Variable.

How it ends decides what Dask does next:
- a worker that dies takes the task with it; the scheduler runs it again on another worker
  (up to `distributed.scheduler.allowed-failures`), which takes the next epoch;
- an exception other than a `DdavsError` (a bug, a crashed engine), or an engine that keeps
  failing while serving (`EngineFailed`), propagates: Dask runs the task again up to its
  `retries`;
- bad input at the start (`DdavsError`: no source could be opened, a missing model file) and
  streams that end with a fault (as the supervision rules classify it) are returned in the
  result, with one machine's exit code: the task is finished and never retried;
- a clean end (stop, duration, end of every file) returns `fault=None`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from ddavs_rt.config import RuntimeConfig
from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.curve import CurveClient
from ddavs_rt.runtime.runner import EXIT_BAD_INPUT

log = logging.getLogger(__name__)

Fault = Literal["permanent", "transient"]


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """What a worker needs to run one shard (pickled into the task)."""

    job: str
    index: int
    config: RuntimeConfig  # this shard's sources only; `publish` unused (the hop replaces it)
    hop: str  # the proxy's XSUB endpoint
    hop_curve: CurveClient | None = None
    engine_threads: int | None = None
    lease_s: float = 30.0
    report_interval_s: float = 1.0


@dataclass(slots=True)
class ShardResult:
    """How a shard ended: `exit_code` as one machine's (runtime/runner.py: 0 clean, 1 transient
    fault, 2 permanent fault or bad input), `fault` the shard's worst fault class, `ended` one
    line per stream ("finished", "stopped", "fault (permanent): ...")."""

    index: int
    worker: str
    epoch: int
    exit_code: int = 0
    fault: Fault | None = None
    error: str | None = None
    ended: dict[str, str] = field(default_factory=dict)


def run_shard(spec: ShardSpec) -> ShardResult:
    """The Dask task. Blocks this worker thread for the shard's life."""
    from distributed import Variable, get_client, get_worker

    from ddavs_rt.cluster.control import JobNames, stop_event, take_epoch

    client, worker = get_client(), get_worker().address
    names = JobNames(spec.job)
    epoch = take_epoch(client, names, spec.index)
    log.info("shard %d (epoch %d) starting on %s: %s", spec.index, epoch, worker,
             [s.id for s in spec.config.sources])
    try:
        runtime = _open_runtime(spec)
    except DdavsError as error:
        return ShardResult(spec.index, worker, epoch, EXIT_BAD_INPUT, fault="permanent", error=str(error))
    runtime.scheduler.epoch = epoch
    from ddavs_rt.runtime.metrics import RuntimeMetrics

    metrics = RuntimeMetrics(runtime.streams, runtime.scheduler)  # read into the reports, never served
    metrics.attach()
    stop = threading.Event()
    status = Variable(names.status(spec.index), client=client)
    try:
        try:
            runtime.start()
        except DdavsError as error:  # no source could be opened: retrying elsewhere cannot help
            return ShardResult(spec.index, worker, epoch, EXIT_BAD_INPUT, fault="permanent", error=str(error))
        failures: list[BaseException] = []

        def serve() -> None:
            try:
                runtime.run(stop)
            except BaseException as error:  # EngineFailed: this worker's engine keeps failing
                failures.append(error)

        serving = threading.Thread(target=serve, name=f"shard-{spec.index}", daemon=True)
        serving.start()
        _watch(spec, client, names, stop, serving, lambda: _report(runtime, metrics, worker, epoch, spec.index), status)
        stop.set()
        serving.join(timeout=15.0)
        if failures:  # raised, so Dask runs the shard again (up to its retries), maybe elsewhere
            raise RuntimeError(f"shard {spec.index} on {worker}: {failures[0]}") from failures[0]
        exit_code, fault, error, ended = shard_outcome(runtime)
        status.set(_report(runtime, metrics, worker, epoch, spec.index, final=True))
        return ShardResult(spec.index, worker, epoch, exit_code, fault=fault, error=error, ended=ended)
    finally:
        stop.set()
        runtime.close()


def _open_runtime(spec: ShardSpec):
    from ddavs_rt.engine import open_engine
    from ddavs_rt.publish.proxy import HopPublisher
    from ddavs_rt.runtime.cli import resolve_engine_path
    from ddavs_rt.runtime.runner import Runtime

    config = spec.config.model_copy(update={"metrics": None, "curve_keys": None})
    # the same engine choice as `ddavs-rt` on one machine (ddavs_rt.engine.open), made on this worker
    options = {} if spec.engine_threads is None else {"threads": spec.engine_threads}
    engine = open_engine(resolve_engine_path(config), backend=config.backend, hint=config.engine_hint, **options)

    def open_publisher() -> HopPublisher:  # called on the scheduler thread, which owns the socket
        return HopPublisher(spec.hop, curve=spec.hop_curve, send_hwm=config.send_hwm)

    try:
        return Runtime(config, engine, open_publisher=open_publisher)
    except BaseException:
        engine.close()
        raise


def _watch(spec, client, names, stop, serving, report, status) -> None:
    """Until told to stop, the heartbeat goes quiet or the runtime ends: report every second."""
    from distributed import Variable

    from ddavs_rt.cluster.control import stop_event

    beat = Variable(names.beat, client=client)
    stopped = stop_event(client, names)
    last_beat, last_change = None, time.monotonic()
    while serving.is_alive():
        try:
            if stopped.is_set():
                log.info("shard %d: stop requested", spec.index)
                return
            value = beat.get(timeout=5)
            if value != last_beat:
                last_beat, last_change = value, time.monotonic()
            status.set(report())
        except Exception as error:  # the scheduler is unreachable: the lease runs out
            log.warning("shard %d: cannot reach the scheduler (%s)", spec.index, error)
        if time.monotonic() - last_change > spec.lease_s:
            log.warning("shard %d: no heartbeat from the submitter for %.0f s; stopping", spec.index, spec.lease_s)
            return
        serving.join(timeout=spec.report_interval_s)


def _report(runtime, metrics, worker: str, epoch: int, index: int, final: bool = False) -> str:
    return json.dumps({
        "shard": index, "worker": worker, "epoch": epoch, "final": final, "time": time.time(),
        "health": [h.to_dict() for h in runtime.health()],
        "metrics": metrics.text(),
    })


def shard_outcome(runtime) -> tuple[int, Fault | None, str | None, dict[str, str]]:
    """The one place that reads how a shard's runtime ended, from the supervision rules'
    `Runtime.result()`: (exit code, worst fault class, the faults' lines, one line per stream).

    A stream fault is returned, never raised, so Dask does not run the shard again: a permanent
    fault would fail the same way on any worker, and a transient one has already been retried
    for the source's `reconnect_timeout` (`--reconnect forever` keeps it trying instead).
    """
    result = runtime.result()
    ended: dict[str, str] = {}
    faults: list[str] = []
    classes: set[str] = set()
    for end in result.streams:
        if end.outcome == "fault":
            kind = end.fault.value if end.fault is not None else "permanent"
            classes.add(kind)
            faults.append(f"{end.stream_id}: {end.error} ({kind})")
            ended[end.stream_id] = f"fault ({kind}): {end.error}"
        else:
            ended[end.stream_id] = end.outcome
    worst: Fault | None = "permanent" if "permanent" in classes else ("transient" if classes else None)
    return result.exit_code, worst, "; ".join(faults) or None, ended
