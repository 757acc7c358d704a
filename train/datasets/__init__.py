"""Dataset loaders for AVSBench S4 / MS3, AVS-Semantic, VPO and SynthAVS, all yielding ClipSample."""

from .avsbench import MS3Dataset, S4Dataset
from .avss import AVSSemanticDataset, SynthAVSDataset, read_class_names
from .base import ClipDataset, ClipPlan, FramePlan, SampledFrames
from .factory import LAYOUTS, open_dataset
from .media import audio_windows, decode_audio, voc_palette
from .sample import ClipSample, collate_clips
from .vpo import VPODataset

__all__ = [
    "AVSSemanticDataset", "ClipDataset", "ClipPlan", "ClipSample", "FramePlan", "LAYOUTS", "MS3Dataset",
    "S4Dataset", "SampledFrames", "SynthAVSDataset", "VPODataset", "audio_windows", "collate_clips", "decode_audio",
    "open_dataset", "read_class_names", "voc_palette",
]
