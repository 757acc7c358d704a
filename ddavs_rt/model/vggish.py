"""VGGish: one 128-d embedding per 0.96 s example of 96 log-mel frames x 64 bands.

Layer indices follow the public PyTorch port (torchvggish), so its checkpoint keys
`features.{0,3,6,8,11,13}.*` and `embeddings.{0,2,4}.*` load without renaming.
The window is cropped to its first 96 frames (0.975 s at 16 kHz); tokens [B, 1, 128].
No PCA post-processing (as in the AVS work).
"""

from __future__ import annotations

from torch import Tensor, nn

from ddavs_rt.config import VGGishConfig
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.audio_encoder import AudioEncoder
from ddavs_rt.model.frontend import LogMel

EXAMPLE_FRAMES = 96


def vggish_features() -> nn.Sequential:
    """conv 64, pool, conv 128, pool, conv 256 x2, pool, conv 512 x2, pool (ReLU after each conv)."""
    layers: list[nn.Module] = []
    cin = 1
    for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = int(item)
    return nn.Sequential(*layers)


class VGGishEncoder(AudioEncoder):
    kind = "vggish"

    def __init__(self, cfg: VGGishConfig, input_rate: int, window_samples: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.out_dim
        self.num_tokens = 1
        self.frontend = LogMel(cfg.frontend, input_rate)
        frames = self.frontend.num_frames(window_samples)
        if frames < EXAMPLE_FRAMES or cfg.frontend.n_mels != 64:
            raise ConfigError(
                f"VGGish needs {EXAMPLE_FRAMES} frames x 64 mel bands per example; a window of "
                f"{window_samples} samples gives {frames} frames x {cfg.frontend.n_mels} bands: "
                "use window_seconds >= 0.975 and the VGGish front-end"
            )
        self.features = vggish_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128), nn.ReLU(inplace=True),
        )

    def forward(self, waveform: Tensor) -> Tensor:
        x = self.frontend(waveform)[:, :, :EXAMPLE_FRAMES]  # [B, 1, 96, 64]
        x = self.features(x)  # [B, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # [B, 6 * 4 * 512], channels last as in the TF original
        return self.embeddings(x)[:, None, :]  # [B, 1, 128]
