"""`ddavs-rt [--demo | --camera DEV [--mic DEV] | --rtsp URL ... | --file PATH ...] [options]`.

Builds a RuntimeConfig from a YAML file (`--config`) and the command line (flags override the
file), opens the engine, starts the sources and serves until Ctrl-C, SIGTERM, `--duration` or the
end of every stream. Live stats are printed every `--stats-interval` seconds.

Exit status (docs/architecture.md, "Supervision"): 0 a clean end (Ctrl-C, SIGTERM, the duration,
every file played through); 1 a source gave up after its reconnect timeout (a transient fault
that lasted); 2 bad input (a flag or config, a wrong path or URL, a 404, a missing or corrupt
file, no such device), before or during the run; 3 the engine failed repeatedly.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
from pathlib import Path

from ddavs_rt.config import (
    CameraSourceConfig,
    MediaSourceConfig,
    RuntimeConfig,
    SyntheticSourceConfig,
    load_config,
    parse_config,
)
from ddavs_rt.errors import DdavsError, EngineFailed
from ddavs_rt.runtime.health import StreamHealthSnapshot

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO_ROOT / "models" / "ddavs-tiny-synth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("sources (any number; each becomes one stream)")
    src.add_argument("--demo", action="store_true", help="the SynthAVS live scene with the shipped model")
    src.add_argument("--camera", metavar="DEV", help="camera index or device path, e.g. 0 or /dev/video0")
    src.add_argument("--mic", metavar="DEV",
                     help="microphone paired with the one --camera, --file or --rtsp video: name, index or 'default'")
    src.add_argument("--camera-size", metavar="WxH", help="requested camera frame size, e.g. 640x480")
    src.add_argument("--camera-fps", type=float, help="requested camera frame rate")
    src.add_argument("--rtsp", metavar="URL", action="append", default=[], help="an RTSP/HTTP stream (repeatable)")
    src.add_argument("--file", metavar="PATH", action="append", default=[], help="a media file (repeatable)")
    src.add_argument("--loop", action="store_true", help="replay --file sources forever")
    src.add_argument("--reconnect", "--reconnect-timeout", dest="reconnect", metavar="SECONDS|forever",
                     help="how long a lost camera or stream is retried before it ends with a fault "
                          "(default: 20 s before its first frame, 300 s per outage after); 'forever' for "
                          "unattended surveillance")
    eng = parser.add_argument_group("engine")
    eng.add_argument("--checkpoint", "--engine", dest="engine", metavar="PATH",
                     help="checkpoint folder, .onnx file or TensorRT engine (default: the shipped model)")
    eng.add_argument("--backend", metavar="BACKEND[:PRECISION]",
                     help="auto (default), torch, onnxruntime, openvino or tensorrt, optionally pinned to a precision: "
                          "openvino:bf16, openvino:int8, onnxruntime:fp32 ...")
    eng.add_argument("--threads", type=int, metavar="N", help="CPU engine threads (default: physical cores)")
    eng.add_argument("--engine-hint", choices=("LATENCY", "THROUGHPUT"),
                     help="OpenVINO performance hint (LATENCY: one call uses every thread; THROUGHPUT: several "
                          "calls at once, each in an inference loop of its own)")
    eng.add_argument("--inference-workers", type=int, metavar="N",
                     help="inference loops (default: as many calls as the engine runs at once)")
    run = parser.add_argument_group("runtime")
    run.add_argument("--config", metavar="YAML", help="runtime config (see pipelines/*.yaml)")
    run.add_argument("--publish", metavar="ENDPOINT", help="ZeroMQ PUB endpoint (default tcp://127.0.0.1:5555)")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    run.add_argument("--max-batch", type=int, help="largest batch across streams")
    run.add_argument("--audio-offset", type=float, metavar="SECONDS", help="calibrated audio/video lag")
    run.add_argument("--no-overlay", action="store_true", help="publish an empty overlay part")
    run.add_argument("--stats-interval", type=float, metavar="SECONDS", help="how often to print live stats")
    run.add_argument("--stats-json", metavar="FILE", help="write the final per-stream health as JSON")
    ops = parser.add_argument_group("operating")
    ops.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics, e.g. 127.0.0.1:9100")
    ops.add_argument("--curve-keys", metavar="DIR", help="CURVE-encrypt the publisher with keys from `ddavs-rt keys`")
    ops.add_argument("--record", metavar="DIR", help="record each stream's masks and headers here")
    ops.add_argument("--record-rotate-mb", type=float, metavar="MB", help="start a new recording segment at this size")
    ops.add_argument("--record-rotate-s", type=float, metavar="S", help="start a new recording segment after this long")
    from ddavs_rt.cluster.options import add_arguments as add_cluster_arguments  # imports no Dask

    add_cluster_arguments(parser)


def build_config(args: argparse.Namespace) -> RuntimeConfig:
    base = load_config(args.config, RuntimeConfig) if args.config else RuntimeConfig()
    data = base.model_dump()
    sources = list(base.sources)
    if args.demo:
        sources.append(SyntheticSourceConfig())
    if args.camera is not None and "://" in args.camera:
        raise DdavsError(f"--camera takes a device index or path, not a URL; pass {args.camera!r} as --rtsp URL")
    video_flags = (args.camera is not None) + len(args.rtsp) + len(args.file)
    if args.mic is not None and (video_flags != 1 or args.demo):
        raise DdavsError(
            "--mic pairs a microphone with one video source: give exactly one of --camera, --file or --rtsp "
            "(for several streams, set `mic:` per source in a --config YAML)"
        )
    if args.camera is not None:
        width = height = None
        if args.camera_size:
            try:
                width, height = (int(v) for v in args.camera_size.lower().split("x"))
            except ValueError:
                raise DdavsError(f"--camera-size {args.camera_size!r} is not WxH, e.g. 640x480") from None
        sources.append(CameraSourceConfig(id="camera", device=args.camera, mic=args.mic,
                                          width=width, height=height, fps=args.camera_fps))
    for i, url in enumerate(args.rtsp):
        sources.append(MediaSourceConfig(id=f"rtsp{i}", location=url, mic=args.mic))
    for i, path in enumerate(args.file):
        sources.append(MediaSourceConfig(id=f"file{i}", location=path, loop=args.loop, mic=args.mic))
    data["sources"] = [s.model_dump() for s in sources]
    overrides = {
        "engine": args.engine, "backend": args.backend, "engine_threads": args.threads,
        "engine_hint": args.engine_hint, "inference_workers": args.inference_workers, "publish": args.publish, "duration_s": args.duration,
        "max_batch": args.max_batch, "audio_offset_s": args.audio_offset, "stats_interval_s": args.stats_interval,
        "metrics": args.metrics, "curve_keys": args.curve_keys, "record": args.record,
        "record_rotate_mb": args.record_rotate_mb, "record_rotate_s": args.record_rotate_s,
        "reconnect_timeout_s": _reconnect_setting(args.reconnect),
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_overlay:
        data["overlay"] = False
    config = parse_config(data, RuntimeConfig, source="command line")
    if config.metrics is not None:
        from ddavs_rt.runtime.metrics import parse_host_port

        parse_host_port(config.metrics)  # a bad address fails before the engine loads
    if not config.sources:
        raise DdavsError("no source given; try `ddavs-rt --demo`, --camera 0 --mic default, --rtsp URL or --file PATH")
    return config


def _reconnect_setting(value: str | None) -> float | str | None:
    if value is None:
        return None
    if value.strip().lower() == "forever":
        return "forever"
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or math.isinf(seconds):
        raise DdavsError(f"--reconnect {value!r} is not a number of seconds or 'forever'; e.g. --reconnect 60")
    return seconds


def resolve_engine_path(config: RuntimeConfig) -> Path:
    if config.engine is not None:
        return config.engine
    if not (SHIPPED_MODEL / "config.json").exists():
        raise DdavsError(
            f"the shipped model is missing at {SHIPPED_MODEL}; pass --checkpoint DIR, or train it with "
            "scripts/train_shipped_model.sh"
        )
    return SHIPPED_MODEL


def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def format_health(h: StreamHealthSnapshot, final: bool = False) -> str:
    """One status line; `final` reports the accuracy of the whole run instead of the last interval."""
    label, j, f = ("run", h.run_j, h.run_f) if final else ("live", h.live_j, h.live_f)
    # capture to sent: the last `rolling_s` seconds while running, the whole run on the final line
    if final:
        latency = (f"latency (run) p50 {_fmt(h.latency_run_p50_ms)} p95 {_fmt(h.latency_run_p95_ms)} "
                   f"p99 {_fmt(h.latency_run_p99_ms)} ms")
    else:
        latency = (f"latency (last {h.rolling_s:.0f} s) p50 {_fmt(h.latency_rolling_p50_ms)} "
                   f"p95 {_fmt(h.latency_rolling_p95_ms)} p99 {_fmt(h.latency_rolling_p99_ms)} ms")
    line = (
        f"[{h.stream_id}] {h.fps:5.1f} fps | {latency} | infer {_fmt(h.infer_rolling_p50_ms)} ms "
        f"| dropped {h.frames_dropped} | audio gaps {h.audio_incomplete_windows}"
    )
    if h.audio_ring_gaps or h.mic_overflows:
        line += f" (discontinuities {h.audio_ring_gaps}, mic overflows {h.mic_overflows})"
    if h.engine_failed_frames:
        line += f" | engine failed on {h.engine_failed_frames} frame(s)"
    if h.silent_windows:
        line += f" | silent (no audio) {h.silent_windows}"
    if h.reconnects:
        line += f" | reconnects {h.reconnects}"
    if j is not None and f is not None:
        line += f" | {label} J {j:.3f} F {f:.3f} J&F {(j + f) / 2:.3f}"
    elif j is not None:
        line += f" | {label} J {j:.3f} (no sounding object in view)"
    if h.fault:
        line += " | faulted"
    elif h.source_state not in ("running",):
        line += f" | {h.source_state}"
    if not h.fault and h.audio_state not in (None, "running"):
        line += f" | mic {h.audio_state}"
    # the fault itself is logged once, when it happens (--stats-json keeps its text)
    return line


def run(args: argparse.Namespace) -> int:
    from ddavs_rt.engine import open_engine
    from ddavs_rt.runtime.runner import EXIT_ENGINE_FAILED, Runtime

    config = build_config(args)
    if getattr(args, "dask", None):  # the streams run on a Dask cluster (ddavs_rt/cluster/)
        from ddavs_rt.cluster.submit import run_cluster

        return run_cluster(config, args)
    engine_path = resolve_engine_path(config)
    engine = open_engine(engine_path, backend=config.backend, threads=config.engine_threads,
                         hint=config.engine_hint)  # the one backend policy: ddavs_rt.engine.open
    if engine.choice is not None:
        print(f"ddavs-rt: {engine.choice.reason}", flush=True)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime = Runtime(config, engine)
    except BaseException:
        engine.close()
        raise
    engine_failed: EngineFailed | None = None
    try:
        runtime.start()  # binds the publisher (a taken port fails here, in one line) and opens the sources
        print(f"ddavs-rt: model {engine.spec.model_id} on {engine.spec.backend} ({engine.spec.device}); "
              f"publishing on {runtime.endpoint or config.publish}; {len(config.sources)} stream(s)", flush=True)
        try:
            result = runtime.run(stop, on_stats=lambda snapshots: [print(format_health(h), flush=True) for h in snapshots])
        except EngineFailed as error:
            engine_failed, result = error, runtime.result()
        final = runtime.health()
    finally:
        runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for h in final:
        print("final " + format_health(h, final=True), flush=True)
    if args.stats_json:
        from ddavs_rt.atomic import atomic_write_text

        atomic_write_text(args.stats_json, json.dumps([h.to_dict() for h in final], indent=2))
    if engine_failed is not None:
        print(f"ddavs-rt: error: {engine_failed}", file=sys.stderr, flush=True)
        return EXIT_ENGINE_FAILED
    return result.exit_code


if __name__ == "__main__":  # pragma: no cover
    from ddavs_rt.cli import main

    sys.exit(main())
