"""ddavs-rt: real-time audio-visual segmentation (DDAVS) as a streaming product."""

__version__ = "0.1.0"
