"""The cluster layer: one site's streams spread over a Dask cluster, one endpoint for subscribers.

    options.py   the `--dask`, `--resources`, ... flags and their parsing (imports no Dask)
    shard.py     the long-running task one worker runs: the ordinary runtime for a shard of streams
    control.py   the named Dask objects a run shares with its shards (stop, heartbeat, epochs, status)
    metrics.py   one Prometheus endpoint over every shard's counters (labels stream, worker)
    submit.py    `ddavs-rt --config site.yaml --dask ADDRESS`: proxy, submission, watching, exit code
    bench.py     `ddavs-rt bench-cluster`: proxy cost, direct vs 1 and 2 workers, recovery after a kill

Only `ddavs-rt ... --dask` imports this package's Dask parts; the
single-machine path never imports `distributed` (a test checks it).
"""
