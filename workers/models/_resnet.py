"""ResNet-18 from torchvision, adapted to small images (3×3 stem, no max-pool), with two activation sites per block.

torchvision's BasicBlock calls its one `relu` module twice; a learnable activation there would be shared
between two sites, so the block here owns `act1` and `act2`.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from workers.models._small import ActFactory


class _Block(BasicBlock):
    act_factory: ActFactory  # set on a subclass per model, since ResNet builds blocks itself

    def __init__(self, inplanes, planes, *args, **kwargs) -> None:
        super().__init__(inplanes, planes, *args, **kwargs)
        del self.relu
        self.act1 = self.act_factory(planes, 2)
        self.act2 = self.act_factory(planes, 2)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


def resnet18(input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> ResNet:
    if len(input_shape) != 3:
        raise ValueError(f"resnet18 needs image inputs (C, H, W), got per-sample shape {input_shape}")
    block = type("Block", (_Block,), {"act_factory": staticmethod(act)})
    model = ResNet(block, [2, 2, 2, 2], num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.relu = act(64, 2)
    model.maxpool = nn.Identity()
    return model
