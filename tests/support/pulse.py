"""A private PulseAudio daemon with a null sink: a real sound card for microphone tests.

`PulseAudioServer(folder).start()` runs `pulseaudio` with HOME and XDG_RUNTIME_DIR in `folder`,
a native socket there, a mono 48 kHz null sink `vsink` as default sink and its monitor as default
source, and exports PULSE_SERVER so that PortAudio's ALSA `pulse` device records from it. A
silent player (`pacat` from /dev/zero) keeps the sink's clock running in real time (without it,
reads run slower than real time). `play(wav)` plays a file into the sink. `stop()` ends every
process it started, by PID. `remove_sink()` unloads the null sink (its monitor, the microphone,
disappears, as when a USB microphone is unplugged) and `restore_sink()` loads it again;
`freeze()`/`thaw()` SIGSTOP/SIGCONT the daemon (a hung sound server).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

SINK = "vsink"
RATE = 48000


def pulse_available() -> str | None:
    """None when the daemon and its tools exist, else the reason to skip."""
    for tool in ("pulseaudio", "pactl", "pacat", "paplay"):
        if shutil.which(tool) is None:
            return f"'{tool}' is missing (install pulseaudio pulseaudio-utils)"
    return None


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit WAV (with the standard library)."""
    import wave

    path = Path(path)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


class PulseAudioServer:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.socket = self.folder / "native"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.silence: subprocess.Popen[bytes] | None = None
        self.players: list[subprocess.Popen[bytes]] = []
        self._saved_env: dict[str, str | None] = {}

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.folder), XDG_RUNTIME_DIR=str(self.folder), PULSE_SERVER=f"unix:{self.socket}")
        return env

    def start(self, timeout: float = 20.0) -> None:
        script = self.folder / "vmic.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-null-sink sink_name={SINK} rate={RATE} channels=1\n"
            f"set-default-sink {SINK}\n"
            f"set-default-source {SINK}.monitor\n"
        )
        log = open(self.folder / "pulseaudio.log", "wb")
        self.daemon = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--system=false", "--exit-idle-time=-1", "-n", "-F", str(script)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                break
            probe = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        else:
            probe = None
        if self.daemon.poll() is not None or probe is None or probe.returncode != 0:
            output = (self.folder / "pulseaudio.log").read_text(errors="replace")[-500:]
            self.stop()
            raise RuntimeError(f"PulseAudio did not start: {output}")
        for key in ("PULSE_SERVER",):
            self._saved_env[key] = os.environ.get(key)
        os.environ["PULSE_SERVER"] = f"unix:{self.socket}"
        self._start_silence()

    def _pactl(self, *arguments: str) -> str:
        result = subprocess.run(["pactl", *arguments], env=self.env, capture_output=True, text=True, timeout=20)
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(arguments)} failed: {result.stderr.strip()}")
        return result.stdout

    def _start_silence(self) -> None:
        self.silence = subprocess.Popen(
            ["pacat", "--playback", f"--device={SINK}", f"--rate={RATE}", "--channels=1",
             "--format=s16le", "/dev/zero"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def _stop_silence(self) -> None:
        silence, self.silence = self.silence, None
        if silence is not None and silence.poll() is None:
            os.kill(silence.pid, signal.SIGTERM)
            silence.wait(timeout=10)

    def remove_sink(self) -> None:
        """Unload the null sink module: its monitor source (the microphone) is gone."""
        modules = self._pactl("list", "short", "modules").splitlines()
        ids = [line.split()[0] for line in modules if "module-null-sink" in line and f"sink_name={SINK}" in line]
        if len(ids) != 1:
            raise RuntimeError(f"expected one null sink module, found {modules}")
        self._stop_silence()
        self._pactl("unload-module", ids[0])

    def restore_sink(self) -> None:
        """Load the null sink again, as the default sink with its monitor the default source."""
        self._pactl("load-module", "module-null-sink", f"sink_name={SINK}", f"rate={RATE}", "channels=1")
        self._pactl("set-default-sink", SINK)
        self._pactl("set-default-source", f"{SINK}.monitor")
        self._start_silence()

    def freeze(self) -> None:
        """SIGSTOP the daemon: a sound server that hangs (its clients' reads block, nothing errors)."""
        assert self.daemon is not None
        os.kill(self.daemon.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.kill(self.daemon.pid, signal.SIGCONT)

    def play(self, wav: str | Path) -> subprocess.Popen[bytes]:
        """Start playing a WAV file into the sink; returns the player process."""
        player = subprocess.Popen(
            ["paplay", f"--device={SINK}", str(wav)], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.players.append(player)
        return player

    def stop(self) -> None:
        self.thaw()  # a frozen daemon would not end on SIGTERM
        for process in [*self.players, self.silence, self.daemon]:
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        self.players, self.silence, self.daemon = [], None, None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
