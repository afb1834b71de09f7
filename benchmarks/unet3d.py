"""A 3D U-Net shaped like nnU-Net's 3d_fullres plain-conv network, for the GPU feed benchmark.

Six resolution stages (32, 64, 128, 256, 320, 320 features), two 3x3x3 conv + InstanceNorm +
LeakyReLU per stage, strided-conv downsampling and transposed-conv upsampling, as nnU-Net plans for
128^3 patches. Deep supervision is left out: it changes the loss, not the data rate the network asks for.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURES = (32, 64, 128, 256, 320, 320)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.InstanceNorm3d(cout, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1),
        nn.InstanceNorm3d(cout, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class UNet3D(nn.Module):
    def __init__(
        self, in_channels: int = 1, num_classes: int = 5, features: tuple[int, ...] = FEATURES
    ) -> None:
        super().__init__()
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i, f in enumerate(features):
            self.encoder.append(_block(cin, f, 1 if i == 0 else 2))
            cin = f
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for f_skip, f_low in zip(reversed(features[:-1]), reversed(features[1:]), strict=True):
            self.up.append(nn.ConvTranspose3d(f_low, f_skip, 2, stride=2))
            self.decoder.append(_block(2 * f_skip, f_skip, 1))
        self.head = nn.Conv3d(features[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.decoder, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """nnU-Net's default objective: cross-entropy plus soft Dice over foreground classes."""
    ce = nn.functional.cross_entropy(logits, target)
    probs = logits.float().softmax(1)
    onehot = nn.functional.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean())
