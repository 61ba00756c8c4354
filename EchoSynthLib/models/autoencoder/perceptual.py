"""A perceptual loss that works offline: distances in the feature maps of EchoSynth's own echo encoder.

MONAI's ``PerceptualLoss`` downloads ImageNet or RadImageNet networks, which cannot be fetched here and
were not trained on echo. This is the LPIPS recipe without its learned layer weights, on the shipped echo
encoder (``models/features``, trained self-supervised on CAMUS speckle): the output of each of the four
ResNet stages, normalised per position over channels, compared by mean squared difference, summed over
stages. The encoder is frozen; gradients flow to the images only.
"""

from __future__ import annotations

import torch


class EchoPerceptualLoss(torch.nn.Module):
    """``loss(a, b)``: the echo-encoder feature distance of two (B, 1, H, W) image batches in [-1, 1]."""

    def __init__(self, encoder: str, device: str | torch.device = "cpu") -> None:
        from EchoSynthLib.models.features.network import EchoEncoder

        super().__init__()
        self.net = EchoEncoder.load(encoder, device).model.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> EchoPerceptualLoss:
        """The encoder stays in evaluation mode (its batch norms keep their statistics)."""
        super().train(mode)
        self.net.eval()
        return self

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs of the encoder's ResNet (MONAI's ``ResNet.forward`` up to the pooling)."""
        net = self.net
        x = net.act(net.bn1(net.conv1(images)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        outputs = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(())
        for fa, fb in zip(self.stages(a), self.stages(b), strict=True):
            na = fa / (fa.norm(dim=1, keepdim=True) + 1e-8)
            nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-8)
            total = total + (na - nb).pow(2).sum(dim=1).mean()
        return total
