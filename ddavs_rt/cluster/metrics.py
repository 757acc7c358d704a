"""One Prometheus endpoint over every shard (`ddavs-rt --dask ... --metrics HOST:PORT`).

Each shard renders its own runtime's metrics (ddavs_rt/runtime/metrics.py, labelled by stream)
into its status report every second; the submitter keeps the latest report of each shard and
this collector re-labels every sample with `worker` (the Dask worker's address) and `shard`, so
one scrape sees every stream of the site. Two more families describe the cluster:
    ddavs_cluster_shard_epoch{shard, worker}       the shard's restart counter (the header's epoch)
    ddavs_cluster_shard_report_age_seconds{shard}  seconds since the shard's last report
A shard's counters start from zero when it restarts (a Prometheus counter reset). A shard whose
report is older than `stale_s` (its worker is gone and it has not started elsewhere yet) is left
out, except for the two cluster families.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ddavs_rt.runtime.metrics_endpoint import MetricsEndpoint


class ShardReports:
    """The latest report of each shard and when it arrived (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[int, tuple[float, dict]] = {}

    def put(self, shard: int, report: dict) -> None:
        with self._lock:
            self._reports[shard] = (time.monotonic(), report)

    def items(self) -> list[tuple[int, float, dict]]:
        with self._lock:
            now = time.monotonic()
            return [(shard, now - at, report) for shard, (at, report) in sorted(self._reports.items())]


class ClusterCollector(Collector):
    def __init__(self, reports: ShardReports, stale_s: float = 10.0) -> None:
        self.reports = reports
        self.stale_s = stale_s

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        epoch = GaugeMetricFamily("ddavs_cluster_shard_epoch", "restart counter of the shard", labels=["shard", "worker"])
        age = GaugeMetricFamily("ddavs_cluster_shard_report_age_seconds", "seconds since the shard last reported",
                                labels=["shard"])
        for shard, age_s, report in self.reports.items():
            worker = str(report.get("worker", ""))
            epoch.add_metric([str(shard), worker], float(report.get("epoch", 0)))
            age.add_metric([str(shard)], age_s)
            if age_s > self.stale_s and not report.get("final"):
                continue
            for family in text_string_to_metric_families(report.get("metrics", "")):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type)
                for sample in family.samples:
                    labels = dict(sample.labels, worker=worker, shard=str(shard))
                    target.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        yield from merged.values()
        yield epoch
        yield age


class ClusterMetrics(MetricsEndpoint):
    """The HTTP endpoint over `ShardReports`; `text()` renders what a scrape sees."""

    def __init__(self, reports: ShardReports) -> None:
        super().__init__(CollectorRegistry())
        self.registry.register(ClusterCollector(reports))
