"""Capture sources: camera (OpenCV), microphone (sounddevice), RTSP/HTTP/file (PyAV), and the
SynthAVS live scene. Each is a `Source` (base.py) emitting `VideoFrame`/`AudioChunk` (types.py).

Import the source you need from its module (`from ddavs_rt.capture.media import MediaSource`);
this package imports nothing heavy by itself.
"""
