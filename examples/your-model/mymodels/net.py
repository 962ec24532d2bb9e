"""A model of your own: `build(input_shape, num_classes, **kwargs) -> nn.Module`. actstudy swaps its activation
modules (here the two ReLUs) for the activation under study, one instance per call site."""

from torch import nn


def build(input_shape, num_classes, width: int = 16):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )
