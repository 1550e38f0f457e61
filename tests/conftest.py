"""Shared fixtures: the embedded model and photos, and tiny analytic classifiers whose answers are known."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)  # CI pins one thread: two threads collapse under any other CPU load

from saliency_core.runtime import configure  # noqa: E402

configure(threads=1)


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 with its shipped ImageNet weights."""
    from saliency_core import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def embedded():
    from saliency_core import embedded_images

    return embedded_images()


@pytest.fixture(scope="session")
def lite0_batch(lite0, embedded):
    """The 20 embedded photos, preprocessed for Lite0: (20, 3, 224, 224) in [0, 1]."""
    from saliency_core import records_to_batch

    return records_to_batch(embedded, lite0)


class BoxMeanNet(nn.Module):
    """Logit c = scale · mean of (normalised) pixels inside a box; other logits constant 0.

    The right explanation for class ``c`` is the box.
    """

    def __init__(self, box: tuple[int, int, int, int] = (8, 24, 8, 24), n_classes: int = 10, c: int = 3,
                 scale: float = 10.0) -> None:
        super().__init__()
        self.box, self.c, self.scale, self.n_classes = box, c, scale, n_classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.box
        v = z[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3)) * self.scale
        out = torch.zeros(z.shape[0], self.n_classes, dtype=z.dtype, device=z.device)
        out = out + 0.0 * z.sum(dim=(1, 2, 3)).unsqueeze(1)  # keep the graph connected for all classes
        out[:, self.c] = v
        return out


class LinearNet(nn.Module):
    """Logits = W · flatten(z) + b: gradients (and LEG's target) known in closed form."""

    def __init__(self, size: int = 32, n_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(3 * size * size, n_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(n_classes, 3 * size * size, generator=g) * 0.01)
            self.fc.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.flatten(1))


def make_classifier(module: nn.Module, size: int = 32, n_classes: int | None = None):
    """Wrap a tiny module as a Classifier with identity normalisation (mean 0, std 1) and ``size``² inputs."""
    from saliency_core.models import Classifier, Preprocessing

    n = n_classes or getattr(module, "n_classes", None) or module.fc.out_features
    prep = Preprocessing(resize=size, crop=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return Classifier.from_module(module, preprocess=prep, class_names=[f"class{i}" for i in range(n)],
                                  name=type(module).__name__, canonical=False)


@pytest.fixture
def box_classifier():
    return make_classifier(BoxMeanNet(), size=32)


@pytest.fixture
def linear_classifier():
    return make_classifier(LinearNet(), size=32)
