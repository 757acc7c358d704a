#!/usr/bin/env bash
# Set up the project's virtual environment at .venv (idempotent: fast when already done).
#   bash scripts/setup.sh          runtime + training dependencies, the `ddavs-rt` command
#   bash scripts/setup.sh --dev    the same plus test dependencies and the system packages the
#                                  real-parts tests use (PortAudio, PulseAudio, GStreamer RTSP)
#   bash scripts/setup.sh --runtime  a deployment without torch, torchaudio or CUDA libraries: the
#                                  streaming runtime, subscribe, view and bench-pipeline on an
#                                  exported graph (pyproject's `runtime` list; about 470 MB)
#   bash scripts/setup.sh --runtime --openvino  the same plus OpenVINO (no NNCF), for the bf16
#                                  engine that `auto` picks on a CPU with AMX or AVX-512 BF16
# VENV=DIR puts the environment somewhere other than .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
runtime=0
openvino=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --runtime) runtime=1 ;;
    --openvino) openvino=1 ;;
    *) echo "setup.sh: unknown option '$arg' (use --dev, --runtime or --runtime --openvino)" >&2; exit 2 ;;
  esac
done
if [ "$openvino" = 1 ] && [ "$runtime" = 0 ]; then
  echo "setup.sh: --openvino goes with --runtime (--dev installs OpenVINO already; a full install adds it with .venv/bin/pip install -e '.[openvino]')" >&2
  exit 2
fi
if [ "$dev" = 1 ] && [ "$runtime" = 1 ]; then
  echo "setup.sh: --dev needs the full install (the tests train and export); use one of --dev, --runtime" >&2
  exit 2
fi
VENV="${VENV:-.venv}"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# System packages: PortAudio for sounddevice (both modes); the test helpers with --dev.
apt_packages=(libportaudio2)
if [ "$dev" = 1 ]; then
  apt_packages+=(pulseaudio pulseaudio-utils alsa-utils libasound2-plugins sox
                 gstreamer1.0-tools gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
                 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
                 gstreamer1.0-libav chromium)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: warning: missing system packages (install them as root): ${missing[*]}" >&2
  fi
fi

extras="."
[ "$dev" = 1 ] && extras=".[dev]"
[ "$runtime" = 1 ] && extras="runtime"
[ "$openvino" = 1 ] && extras="runtime+openvino"
stamp="$VENV/.ddavs-setup-$( (cat pyproject.toml; echo "$extras") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x "$VENV/bin/ddavs-rt" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
if [ "$runtime" = 1 ]; then
  # the package without its declared (full) dependencies, then exactly the runtime list (with
  # --openvino, plus the engine as pinned in pyproject's `openvino` extra, not NNCF)
  mapfile -t runtime_deps < <("$VENV/bin/python" -c 'import sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
engine = [d for d in extras["openvino"] if d.startswith("openvino")] if sys.argv[1] == "1" else []
print("\n".join(extras["runtime"] + engine))' "$openvino")
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${runtime_deps[@]}"
  if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "setup: error: torch is importable in the runtime environment $VENV" >&2
    exit 1
  fi
else
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$extras"
fi
rm -f "$VENV"/.ddavs-setup-*
touch "$stamp"
echo "setup: $VENV ready ($extras, $(du -sh "$VENV" | cut -f1))"
