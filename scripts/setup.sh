#!/usr/bin/env bash
# Set up the project's virtual environment at .venv (idempotent: fast when already done).
#   bash scripts/setup.sh          runtime + training dependencies, the `ddavs-rt` command
#   bash scripts/setup.sh --dev    the same plus test dependencies and the system packages the
#                                  real-parts tests use (PortAudio, PulseAudio, GStreamer RTSP)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "setup.sh: unknown option '$arg' (use --dev)" >&2; exit 2 ;;
  esac
done

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
stamp=".venv/.ddavs-setup-$( (cat pyproject.toml; echo "$extras") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x .venv/bin/ddavs-rt ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$extras"
rm -f .venv/.ddavs-setup-*
touch "$stamp"
echo "setup: .venv ready ($extras)"
