"""Real-parts test helpers: media files written with PyAV, a private PulseAudio daemon, a
GStreamer RTSP server. Each starts real processes and stops them by the PID it started."""
