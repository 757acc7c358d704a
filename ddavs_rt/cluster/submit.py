"""`ddavs-rt --config site.yaml --dask ADDRESS`: the site's streams as shards on a Dask cluster.

The submitting process:
1. connects to the scheduler (`tcp://HOST:PORT`) or starts a `LocalCluster` (`local:N`: N worker
   processes on 127.0.0.1, no dashboard);
2. starts the proxy (ddavs_rt/publish/proxy.py): subscribers connect to `--publish` as on one
   machine, shards connect to the hop;
3. splits the streams round-robin into shards (one per eligible worker unless `--shards`) and
   submits one long-running task per shard (`shard.run_shard`), first placed on a worker of its
   own (`workers=[...]`, `allow_other_workers=True`), needing `--resources` of it;
4. raises the heartbeat every second, reads each shard's report (status lines, `--metrics`),
   and notices restarts (a new epoch) and ends;
5. on Ctrl-C, SIGTERM, `--duration` or when every shard has ended, sets the stop event, waits
   for the shards' results and closes everything.

Exit code, the highest of: each shard's own (one machine's codes, runtime/runner.py: 0 clean,
1 a stream ended with a transient fault, 2 a permanent fault or bad input), and 3 for a shard that
could not be kept running (an exception after its retries, its engine failing, a worker lost
more often than Dask's allowed-failures).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import threading
import time

from ddavs_rt.cluster.options import DaskAddress, parse_address, parse_resources
from ddavs_rt.config import RuntimeConfig
from ddavs_rt.errors import DdavsError

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def split_sources(config: RuntimeConfig, shards: int) -> list[RuntimeConfig]:
    """`shards` configs, each with every `shards`-th source (round-robin), empty ones left out."""
    parts = [config.sources[i::shards] for i in range(shards)]
    return [config.model_copy(update={"sources": part}) for part in parts if part]


def default_hop(address: DaskAddress) -> str:
    """The hop on this machine's address toward the scheduler (no packet is sent to learn it)."""
    host = address.host
    if host in _LOOPBACK:
        return "tcp://127.0.0.1:*"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))  # a UDP connect only picks the route
            return f"tcp://{probe.getsockname()[0]}:*"
    except OSError as error:
        raise DdavsError(f"cannot tell this machine's address toward {host} ({error}); pass --hop tcp://IP:PORT") from None


def open_client(address: DaskAddress, workers_hint: int, resources: dict[str, float]):
    """(client, local cluster or None). A scheduler that cannot be reached is one line."""
    from distributed import Client, LocalCluster

    if address.local_workers is not None:
        # local:N is this machine only: scheduler and workers on loopback, no dashboard
        cluster = LocalCluster(host="127.0.0.1", dashboard_address=None, n_workers=address.local_workers,
                               threads_per_worker=max(2, workers_hint), processes=True,
                               resources=resources or None)
        return Client(cluster), cluster
    try:
        return Client(address.scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as error:
        raise DdavsError(f"cannot reach the Dask scheduler at {address.scheduler} ({error}); start one with "
                         "`dask scheduler` and check the address") from None


def eligible_workers(client, resources: dict[str, float], wait_s: float = 30.0) -> list[str]:
    """Workers offering every resource a shard needs; waits up to `wait_s` for the first."""
    deadline = time.monotonic() + wait_s
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        fit = sorted(a for a, w in workers.items()
                     if all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items()))
        if fit:
            return fit
        if time.monotonic() > deadline:
            need = ",".join(f"{k}={v:g}" for k, v in resources.items())
            what = f"offers {need}" if resources else "is connected"
            hint = f" --resources {need}" if resources else ""
            raise DdavsError(f"no Dask worker {what} after {wait_s:.0f} s: start workers with "
                             f"`dask worker SCHEDULER{hint}`")
        time.sleep(0.5)


def run_cluster(config: RuntimeConfig, args: argparse.Namespace) -> int:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise DdavsError("--dask needs Dask: pip install 'ddavs-rt[cluster]'") from None
    if getattr(args, "verbose", 1) < 3 and not logging.getLogger("distributed").isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's INFO chatter only with -vv
    address = parse_address(args.dask)
    resources = parse_resources(args.resources)
    if args.shards is not None and args.shards < 1:
        raise DdavsError(f"--shards {args.shards}: give at least 1")
    hop = args.hop or default_hop(address)
    wanted = args.shards or (address.local_workers or 0)
    client, cluster = open_client(address, max(wanted, 1), resources)
    try:
        return _run(config, args, client, resources, hop)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(config: RuntimeConfig, args: argparse.Namespace, client, resources: dict[str, float], hop: str) -> int:
    from distributed import Variable

    from ddavs_rt.cluster.control import JobNames, read_status, stop_event
    from ddavs_rt.cluster.metrics import ClusterMetrics, ShardReports
    from ddavs_rt.cluster.shard import ShardSpec, run_shard
    from ddavs_rt.publish.proxy import Proxy

    workers = eligible_workers(client, resources)
    shard_configs = split_sources(config, min(args.shards or len(workers), len(config.sources)))
    names = JobNames.fresh()
    reports = ShardReports()
    metrics = None
    if config.metrics is not None:
        from ddavs_rt.runtime.metrics import parse_host_port

        metrics = ClusterMetrics(reports)
        metrics.serve(*parse_host_port(config.metrics))
    proxy = Proxy(config.publish, hop=hop, curve_keys=config.curve_keys)
    try:
        proxy.start()
        beat = Variable(names.beat, client=client)
        beat.set(0)
        stop_event(client, names).clear()
        for i in range(len(shard_configs)):
            Variable(names.epoch(i), client=client).set(-1)
            Variable(names.status(i), client=client).set("")
        specs = [ShardSpec(job=names.job, index=i, config=c, hop=proxy.hop_endpoint, hop_curve=proxy.hop_client,
                           engine_threads=args.engine_threads) for i, c in enumerate(shard_configs)]
        futures = [
            client.submit(run_shard, spec, key=f"ddavs-shard-{names.job}-{spec.index}", pure=False,
                          retries=args.shard_retries, resources=resources or None,
                          workers=[workers[spec.index % len(workers)]], allow_other_workers=True)
            for spec in specs
        ]
        print(f"ddavs-rt: {len(config.sources)} stream(s) in {len(specs)} shard(s) on {len(workers)} worker(s); "
              f"publishing on {proxy.publish_endpoint} (shards connect to {proxy.hop_endpoint})", flush=True)
        for spec in specs:
            print(f"  shard {spec.index}: {', '.join(s.id for s in spec.config.sources)}", flush=True)
        outcome = _serve(config, client, names, futures, beat, reports, len(specs), read_status)
        final = _finish(client, names, futures, stop_event)
        for shard in range(len(specs)):  # the shards' last reports, written as they stopped
            report = read_status(client, names, shard)
            if report is not None and report.get("final"):
                reports.put(shard, report)
    finally:
        proxy.close()
        if metrics is not None:
            metrics.close()
    return _report_end(args, reports, final, outcome)


def _serve(config, client, names, futures, beat, reports, count, read_status) -> str:
    """Heartbeat, reports and status lines until a signal, the duration or every shard's end."""
    from ddavs_rt.runtime.cli import format_health
    from ddavs_rt.runtime.health import StreamHealthSnapshot

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    next_stats = started + config.stats_interval_s
    epochs: dict[int, int] = {}
    seen: dict[int, float] = {}  # the time stamp of each shard's last report taken
    tick = 0
    try:
        while not stop.is_set():
            tick += 1
            beat.set(tick)
            for shard in range(count):
                report = read_status(client, names, shard)
                if report is None:
                    continue
                if report["epoch"] != epochs.get(shard, report["epoch"]):
                    print(f"ddavs-rt: shard {shard} restarted on {report['worker']} (epoch {report['epoch']})",
                          flush=True)
                epochs[shard] = report["epoch"]
                if seen.get(shard) != report["time"]:  # a report not seen before (else its age grows)
                    seen[shard] = report["time"]
                    reports.put(shard, report)
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + config.stats_interval_s
                for shard, age, report in reports.items():
                    for h in report["health"]:
                        print(f"{format_health(StreamHealthSnapshot(**h))} | shard {shard} epoch {report['epoch']}"
                              + (f" | no report for {age:.0f} s" if age > 5 else ""), flush=True)
            if all(f.done() for f in futures):
                return "ended"
            if config.duration_s is not None and now - started >= config.duration_s:
                return "duration"
            stop.wait(1.0)
        return "signal"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _finish(client, names, futures, stop_event) -> list[tuple[int, object, str | None]]:
    """Stop every shard and collect (index, ShardResult or None, error line or None)."""
    from distributed import wait

    stop_event(client, names).set()
    wait(futures, timeout=30)
    results = []
    for index, future in enumerate(futures):
        if not future.done():
            future.cancel()
            results.append((index, None, "did not stop within 30 s; cancelled"))
        elif future.status == "error":
            error = future.exception()
            name = type(error).__name__
            line = ("its worker was lost too many times (Dask's allowed-failures); not retried"
                    if name == "KilledWorker" else f"failed after its retries: {name}: {error}")
            results.append((index, None, line))
        elif future.status == "cancelled":
            results.append((index, None, "cancelled"))
        else:
            results.append((index, future.result(), None))
    return results


def _report_end(args, reports, final, outcome: str) -> int:
    from ddavs_rt.runtime.cli import format_health
    from ddavs_rt.runtime.health import StreamHealthSnapshot

    health = []
    for _shard, _age, report in reports.items():
        for h in report["health"]:
            health.append(h)
            print("final " + format_health(StreamHealthSnapshot(**h), final=True), flush=True)
    from ddavs_rt.runtime.runner import EXIT_ENGINE_FAILED

    code = 0
    for index, result, error in final:
        if error is not None:  # the shard could not be kept running
            code = max(code, EXIT_ENGINE_FAILED)
            print(f"ddavs-rt: shard {index} {error}", flush=True)
        elif result is not None:
            code = max(code, result.exit_code)
            if result.fault is not None:
                print(f"ddavs-rt: shard {index} ended with a {result.fault} fault: {result.error}", flush=True)
    if args.stats_json:
        from ddavs_rt.atomic import atomic_write_text

        atomic_write_text(args.stats_json, json.dumps(health, indent=2))
    log.info("cluster run ended (%s)", outcome)
    return code

