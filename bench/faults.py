"""Fault benchmark (issue 12): kill/restart real RTSP servers under a running runtime, and the
exit codes of the real CLI for the faults that must end a process.

    .venv/bin/python bench/faults.py                         # every scenario
    .venv/bin/python bench/faults.py --only rtsp-kill-restart --cycles 5
    .venv/bin/python bench/faults.py --list

Writes `bench/results/faults-<machine>-<date>.json` (or `--out FILE`). Real parts only: the
GStreamer RTSP servers of tests/support/rtsp_server.py (loopback), real files, the CLI as a
subprocess, a PulseAudio virtual microphone when one can be started. The one double is the
camera at the OpenCV boundary in `camera-dies` (a camera that stops delivering cannot be caused
otherwise).

Scenarios are rows of `SCENARIOS`: a name, a one-line description, and a function
`run(ctx: Context) -> dict` whose dict goes into the JSON under `scenarios[name]`. Add one (for
example an "engine-fault" scenario) by appending a `Scenario`; `Context` gives the engine path,
a CLI runner and RTSP servers that are stopped by PID when the run ends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the real-parts helpers (RTSP server, PulseAudio)

from support.rtsp_server import RtspServer, free_port, system_rtsp_available  # noqa: E402

PYTHON = sys.executable


# ------------------------------------------------------------------------------ context
@dataclass
class Context:
    engine: Path                      # what --checkpoint/--engine gets
    backend: str
    cycles: int
    tmp: Path
    servers: list[RtspServer] = field(default_factory=list)

    def rtsp_server(self, fps: int = 10) -> RtspServer:
        server = RtspServer(free_port(), fps=fps)
        server.start()
        self.servers.append(server)
        return server

    def cli(self, arguments: list[str], timeout: float = 300.0, prefix: list[str] | None = None) -> dict:
        """Run the real CLI; returns exit code, seconds to exit and the lines that report a fault."""
        command = prefix or [PYTHON, "-m", "ddavs_rt.cli"]
        began = time.monotonic()
        result = subprocess.run(
            [*command, *arguments, "--checkpoint", str(self.engine), "--backend", self.backend,
             "--publish", f"tcp://127.0.0.1:{free_port()}"],
            capture_output=True, text=True, timeout=timeout, cwd=REPO,
        )
        lines = (result.stdout + result.stderr).splitlines()
        faults = [line for line in lines if line.startswith("ddavs-rt: error:") or " E " in line]
        return {
            "exit_code": result.returncode,
            "seconds_to_exit": round(time.monotonic() - began, 2),
            "fault_lines": faults,
        }

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[Context], dict]


# ------------------------------------------------------------------------------ recovery
def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def rtsp_kill_restart(ctx: Context) -> dict:
    """Two RTSP streams through one runtime; server `a` is killed and restarted `cycles` times."""
    from ddavs_rt.config import MediaSourceConfig, RuntimeConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.publish.subscriber import Subscriber
    from ddavs_rt.runtime.runner import Runtime

    fps, outage_s, settle_s = 10, 8.0, 8.0
    servers = {"a": ctx.rtsp_server(fps), "b": ctx.rtsp_server(fps)}
    port = free_port()
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id=k, location=s.url, read_timeout_s=3.0) for k, s in servers.items()],
        publish=f"tcp://127.0.0.1:{port}", overlay=False, send_hwm=10000,
    )
    runtime = Runtime(config, open_engine(ctx.engine, backend=ctx.backend))
    messages: dict[str, list[tuple[float, int, float]]] = {"a": [], "b": []}  # (monotonic, seq, ms)
    stop = threading.Event()
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")

    def listen() -> None:
        while not stop.is_set():
            message = subscriber.recv(0.2)
            if message is not None:
                h = message.header
                # capture -> received by this subscriber (one machine, one wall clock)
                messages[h.stream_id].append((time.monotonic(), h.seq, (time.time() - h.capture_wall_time) * 1000.0))

    def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    runner = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    cycles = []
    stream_a = runtime.streams[0]
    try:
        runtime.start()
        runner.start()
        if not wait_until(lambda: len(messages["a"]) >= 20 and len(messages["b"]) >= 20, 120):
            raise RuntimeError("the streams did not start publishing")
        time.sleep(settle_s)
        for _ in range(ctx.cycles):
            before_start = time.monotonic() - settle_s
            servers["a"].stop()
            killed = time.monotonic()
            noticed = killed if wait_until(lambda: stream_a.health().source_state == "reconnecting", 30) else None
            noticed_at = time.monotonic() if noticed else None
            time.sleep(max(0.0, outage_s - (time.monotonic() - killed)))
            servers["a"].start()
            back = time.monotonic()
            recovered = wait_until(lambda: any(t > back for t, _, _ in messages["a"]), 60)
            first = min((t for t, _, _ in messages["a"] if t > back), default=None)
            time.sleep(settle_s)
            after_end = time.monotonic()
            a_before = [m for m in messages["a"] if before_start <= m[0] < killed]
            last_before = max((t for t, _, _ in messages["a"] if t < killed), default=None)
            rate_before = (len(a_before) - 1) / (a_before[-1][0] - a_before[0][0]) if len(a_before) > 1 else None
            b_during = [m for m in messages["b"] if killed <= m[0] < back]
            b_gaps = np.diff([t for t, _, _ in b_during]) if len(b_during) > 1 else np.array([])

            def p95(stream: str, start: float, end: float) -> float | None:
                return _percentile([ms for t, _, ms in messages[stream] if start <= t < end], 95)

            cycles.append({
                "outage_s": round(back - killed, 2),
                "noticed_after_kill_s": round(noticed_at - killed, 2) if noticed_at else None,
                "recovered": recovered,
                "recover_after_server_back_s": round(first - back, 2) if first else None,
                # frames the killed stream did not publish, at the rate it published before
                "frames_lost": (int(round((first - last_before) * rate_before)) - 1
                                if first and last_before and rate_before else None),
                "published_rate_before_fps": round(rate_before, 2) if rate_before else None,
                "other_stream_max_gap_during_s": round(float(b_gaps.max()), 3) if len(b_gaps) else None,
                "capture_to_received_p95_ms": {
                    "killed": {"before": p95("a", before_start, killed), "after": p95("a", back, after_end)},
                    "other": {"before": p95("b", before_start, killed), "during": p95("b", killed, back),
                              "after": p95("b", back, after_end)},
                },
            })
            print(f"  cycle {len(cycles)}: back -> publishing in {cycles[-1]['recover_after_server_back_s']} s, "
                  f"{cycles[-1]['frames_lost']} frames lost", flush=True)
    finally:
        stop.set()
        runner.join(timeout=15)
        listener.join(timeout=5)
        subscriber.close()
        health = {h.stream_id: h for h in runtime.health()}
        runtime.close()
    seq_b = [s for _, s, _ in messages["b"]]
    recover = [c["recover_after_server_back_s"] for c in cycles if c["recover_after_server_back_s"] is not None]
    return {
        "servers_fps": fps,
        "outage_target_s": outage_s,
        "cycles": cycles,
        "recover_after_server_back_s": {"median": _percentile(recover, 50), "max": max(recover) if recover else None},
        "other_stream_seq_gaps": int(np.sum(np.diff(seq_b) != 1)) if len(seq_b) > 1 else None,
        "reconnects_counted": health["a"].reconnects,
        "reconnects_expected": ctx.cycles,
    }


def _pulse(ctx: Context, name: str):
    """A private PulseAudio daemon with a null sink (tests/support/pulse.py), or RuntimeError."""
    from support.pulse import PulseAudioServer, pulse_available

    reason = pulse_available()
    if reason is not None:
        raise RuntimeError(f"PulseAudio is unavailable: {reason}")
    folder = ctx.tmp / name
    folder.mkdir(exist_ok=True)
    pulse = PulseAudioServer(folder)
    pulse.start()
    return pulse


def mic_remove_restore(ctx: Context) -> dict:
    """A file paired with a real PulseAudio microphone; the microphone's null sink is unloaded
    (as a USB microphone is unplugged) and loaded again `cycles` times."""
    from support.media import write_test_clip

    from ddavs_rt.config import MediaSourceConfig, RuntimeConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.publish.subscriber import Subscriber
    from ddavs_rt.runtime.runner import Runtime

    outage_s, settle_s = 5.0, 6.0
    pulse = _pulse(ctx, "pulse-mic")
    clip = write_test_clip(ctx.tmp / "mic-clip.mp4", seconds=2.0, fps=10, audio=False)
    port = free_port()
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id="av", location=str(clip.path), loop=True, mic="pulse")],
        publish=f"tcp://127.0.0.1:{port}", overlay=False, send_hwm=10000, reconnect_timeout_s=120,
    )
    runtime = Runtime(config, open_engine(ctx.engine, backend=ctx.backend))
    messages: list[tuple[float, int, bool]] = []  # (monotonic, seq, window complete)
    stop = threading.Event()
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")

    def listen() -> None:
        while not stop.is_set():
            message = subscriber.recv(0.2)
            if message is not None:
                messages.append((time.monotonic(), message.header.seq, message.header.audio_window.complete))

    def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    runner = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    stream = runtime.streams[0]
    cycles = []
    try:
        runtime.start()
        runner.start()
        if not wait_until(lambda: any(c for _, _, c in messages), 120):
            raise RuntimeError("no complete audio window: the microphone's audio never arrived")
        time.sleep(settle_s)
        for _ in range(ctx.cycles):
            pulse.remove_sink()
            removed = time.monotonic()
            noticed = wait_until(lambda: stream.health().audio_state == "reconnecting", 30)
            noticed_at = time.monotonic()
            time.sleep(max(0.0, outage_s - (time.monotonic() - removed)))
            pulse.restore_sink()
            back = time.monotonic()
            recovered = wait_until(lambda: any(c and t > back for t, _, c in messages), 60)
            first = min((t for t, _, c in messages if c and t > back), default=None)
            time.sleep(settle_s)
            during = [m for m in messages if removed <= m[0] < back]
            cycles.append({
                "outage_s": round(back - removed, 2),
                "noticed_after_removal_s": round(noticed_at - removed, 2) if noticed else None,
                "recovered": recovered,
                "complete_windows_after_sink_back_s": round(first - back, 2) if first else None,
                "video_published_during_outage": len(during),
                "video_fps_during_outage": round(len(during) / (back - removed), 2),
                "incomplete_windows_during_outage": sum(not c for _, _, c in during),
            })
            print(f"  cycle {len(cycles)}: sink back -> complete windows in "
                  f"{cycles[-1]['complete_windows_after_sink_back_s']} s; "
                  f"{cycles[-1]['video_fps_during_outage']} fps of video during the outage", flush=True)
    finally:
        stop.set()
        runner.join(timeout=15)
        listener.join(timeout=5)
        subscriber.close()
        health = runtime.health()[0]
        result = runtime.result()
        runtime.close()
        pulse.stop()
    seqs = [s for _, s, _ in messages]
    recover = [c["complete_windows_after_sink_back_s"] for c in cycles if c["complete_windows_after_sink_back_s"] is not None]
    return {
        "outage_target_s": outage_s,
        "cycles": cycles,
        "complete_windows_after_sink_back_s": {"median": _percentile(recover, 50), "max": max(recover) if recover else None},
        "video_seq_gaps": int(np.sum(np.diff(seqs) != 1)) if len(seqs) > 1 else None,
        "reconnects_counted": health.reconnects,
        "reconnects_expected": ctx.cycles,
        "audio_incomplete_windows": health.audio_incomplete_windows,
        "audio_ring_gaps": health.audio_ring_gaps,
        "exit_code_after_stop": result.exit_code,
    }


# ------------------------------------------------------------------------------ exits
def exit_mic_gone(ctx: Context) -> dict:
    """A file paired with a PulseAudio microphone that is removed and never comes back; `--reconnect 5`."""
    from support.media import write_test_clip

    pulse = _pulse(ctx, "pulse-gone")
    clip = write_test_clip(ctx.tmp / "gone-clip.mp4", seconds=2.0, fps=10, audio=False)
    timer = threading.Timer(30.0, pulse.remove_sink)  # after the run has started and heard the microphone
    timer.start()
    try:
        result = ctx.cli(["--file", str(clip.path), "--loop", "--mic", "pulse", "--reconnect", "5", "--duration", "300"])
    finally:
        timer.cancel()
        pulse.stop()
    result["removed_after_s"] = 30.0
    return result


def exit_404(ctx: Context) -> dict:
    server = ctx.rtsp_server()
    return ctx.cli(["--rtsp", server.url.replace("/test", "/no-such-path"), "--duration", "300"])


def exit_refused(ctx: Context) -> dict:
    return ctx.cli(["--rtsp", f"rtsp://127.0.0.1:{free_port()}/x", "--duration", "300"])


def exit_corrupt_file(ctx: Context) -> dict:
    from support.media import write_test_clip

    clip = write_test_clip(ctx.tmp / "clip.mp4", seconds=4.0, fps=25)
    data = clip.path.read_bytes()
    n = len(data)
    bad = ctx.tmp / "corrupt-midway.mp4"
    bad.write_bytes(data[: n // 2] + os.urandom(n // 4) + data[n // 2 + n // 4:])
    return ctx.cli(["--file", str(bad)])


def exit_camera_dies(ctx: Context) -> dict:
    """A camera that delivers 2 s of frames, then dies (the OpenCV double below), beside a real
    PulseAudio microphone when one can be started; `--reconnect 5`."""
    from support.pulse import PulseAudioServer, pulse_available

    pulse = None
    arguments = ["--camera", "bench-camera", "--reconnect", "5", "--duration", "300"]
    if pulse_available() is None:
        pulse = PulseAudioServer(ctx.tmp / "pulse")
        (ctx.tmp / "pulse").mkdir(exist_ok=True)
        pulse.start()
        arguments += ["--mic", "pulse"]
    try:
        result = ctx.cli(arguments, prefix=[PYTHON, str(Path(__file__).resolve()), "--camera-child"])
    finally:
        if pulse is not None:
            pulse.stop()
    result["microphone"] = "pulseaudio virtual microphone" if pulse is not None else "none (PulseAudio unavailable)"
    return result


def _camera_child(argv: list[str]) -> int:
    """The CLI with cv2.VideoCapture replaced by a camera that dies after 50 frames."""
    import cv2
    from support.dying_camera import dying_camera

    cv2.VideoCapture = dying_camera(frames=50, interval_s=0.04)
    from ddavs_rt.cli import main

    return main(argv)


def engine_fault(ctx: Context) -> dict:
    """bench/faults_engine.py's two scenarios (one failing batch, one poisoned stream) on ctx's engine."""
    sys.path.insert(0, str(REPO / "bench"))
    from faults_engine import run_engine_fault

    return run_engine_fault(ctx.engine, ctx.backend)


SCENARIOS: list[Scenario] = [
    Scenario("rtsp-kill-restart", "one of two RTSP servers killed and restarted; recovery, losses, latency",
             rtsp_kill_restart),
    Scenario("exit-404", "a wrong RTSP path on a live server (single source): exit code, time to exit", exit_404),
    Scenario("exit-refused", "a refused RTSP URL (single source, default timeout): exit code, time to exit",
             exit_refused),
    Scenario("exit-corrupt-file", "a file corrupted mid-way: exit code", exit_corrupt_file),
    Scenario("exit-camera-dies", "a camera that dies beside a live microphone: exit code", exit_camera_dies),
    Scenario("mic-remove-restore", "a PulseAudio microphone removed and restored under a file stream: recovery, "
             "video during the outage, counters", mic_remove_restore),
    Scenario("exit-mic-gone", "a microphone removed for good (--reconnect 5): exit code, time to exit", exit_mic_gone),
    Scenario("engine-fault", "an exception injected in engine.infer on one batch, then on one stream's frames: "
             "frames lost, the others' seq continuity, p95 before/during/after", engine_fault),
]


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--camera-child":
        return _camera_child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--cycles", type=int, default=3, help="kill/restart cycles in rtsp-kill-restart")
    parser.add_argument("--engine", help="checkpoint or .onnx (default: the shipped model, exported once)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--out", help="JSON file (default bench/results/faults-<machine>-<date>.json)")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:20s} {scenario.description}")
        return 0
    import signal

    # SIGTERM unwinds like Ctrl-C, so every RTSP server (its own session) is stopped by PID
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = system_rtsp_available()
    if reason is not None:
        print(f"bench/faults.py needs the GStreamer RTSP server: {reason}", file=sys.stderr)
        return 2
    from ddavs_rt.engine.machine import describe_machine
    from ddavs_rt.engine import choose_engine
    from ddavs_rt.runtime.cli import SHIPPED_MODEL

    engine = Path(args.engine) if args.engine else None
    if engine is None:
        engine = SHIPPED_MODEL
        if args.backend == "onnxruntime":  # the shipped model's cached ONNX export (made once if missing)
            choice = choose_engine(SHIPPED_MODEL, "auto:fp32", "cpu")
            engine = choice.target if choice.backend == "onnxruntime" else SHIPPED_MODEL
        if engine == SHIPPED_MODEL:
            args.backend = "torch"
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    import tempfile

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ddavs-faults-") as tmp:
        for scenario in chosen:
            print(f"{scenario.name}: {scenario.description}", flush=True)
            ctx = Context(engine=engine, backend=args.backend, cycles=args.cycles, tmp=Path(tmp))
            began = time.monotonic()
            try:
                results[scenario.name] = scenario.run(ctx)
            except Exception as error:  # noqa: BLE001 - one scenario's failure is recorded, not fatal
                results[scenario.name] = {"failed": f"{type(error).__name__}: {error}"}
            finally:
                ctx.close()
            results[scenario.name]["scenario_wall_s"] = round(time.monotonic() - began, 1)
            print(f"  -> {json.dumps({k: v for k, v in results[scenario.name].items() if k != 'cycles'})}", flush=True)
    machine = describe_machine()
    record = {
        "benchmark": "bench/faults.py",
        "date": dt.date.today().isoformat(),
        "machine": machine,
        "machine_note": "2 shared CPU cores: other engineers' jobs ran at the same time; times are upper bounds",
        "engine": str(engine.relative_to(REPO) if engine.is_relative_to(REPO) else engine.name),
        "backend": args.backend,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "command": "python bench/faults.py " + " ".join(argv),
        "exit_codes_expected": {"exit-404": 2, "exit-refused": 1, "exit-corrupt-file": 2, "exit-camera-dies": 1,
                                "exit-mic-gone": 1},
        "scenarios": results,
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / (
        f"faults-cpu-{machine.get('logical_cpus', os.cpu_count())}core-{record['date']}.json")
    from ddavs_rt.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(record, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
