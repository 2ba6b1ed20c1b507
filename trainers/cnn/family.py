"""The CNN family's entry and options: LeNet-5 as the study notes lay it out.

32×32×1 → 6 kernels 5×5 → 28×28×6 → pool → 14×14×6 → 16 kernels 5×5 → 10×10×16 → pool
→ 5×5×16 → two dense layers (120, 84) → 10-way softmax. Each convolution is followed by its
activation and then by pooling (the notes: convolution is linear, the activation makes it
non-linear, pooling then selects features). Padding, stride and pooling type are options
whose output sizes follow `output_size`.
"""

import math
from dataclasses import dataclass

from tfsp.core.errors import UserError
from tfsp.core.family import Family, Options, option
from tfsp.core.features import IMAGE_SIZE, NUM_CLASSES

PADDINGS = ("valid", "same")
# "none" is the notes' claim's control (pooling improves accuracy and saves computation):
# the convolutions alone, their full-size maps flattened into the dense layers.
POOLINGS = ("max", "average", "none")


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a convolution or pooling window, by the notes' rules.

    valid keeps only windows that lie wholly on the image: ceil((size - kernel + 1) / stride);
    same pads with zeros so every pixel is sampled: ceil(size / stride).
    """
    if padding == "valid":
        return math.ceil((size - kernel + 1) / stride)
    if padding == "same":
        return math.ceil(size / stride)
    raise UserError(f"padding must be one of {PADDINGS}, got {padding!r}")


@dataclass(frozen=True)
class LeNetConfig(Options):
    """Architecture options; the defaults are exactly the notes' LeNet-5."""

    filters: tuple[int, int] = (6, 16)
    kernel_size: int = 5
    conv_stride: int = option(1, "convolution stride", minimum=1)
    conv_padding: str = option("valid", "convolution padding", choices=PADDINGS, flag="padding")
    pooling: str = option("max", "pooling type", choices=POOLINGS)
    pool_size: int = 2
    pool_stride: int = 2
    dense_units: tuple[int, int] = (120, 84)
    activation: str = "relu"
    num_classes: int = NUM_CLASSES

    def validate(self) -> None:
        """Refuse options that cannot build the model (feature_map_sizes' checks)."""
        self.feature_map_sizes()

    def feature_map_sizes(self) -> list[int]:
        """Spatial size after conv1, pool1, conv2, pool2 (without pooling, a pool's size is
        its convolution's); errors if the image vanishes."""
        if self.conv_padding not in PADDINGS:
            raise UserError(f"conv padding must be one of {PADDINGS}, got {self.conv_padding!r}")
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if min(self.kernel_size, self.conv_stride, self.pool_size, self.pool_stride) < 1:
            raise UserError("kernel size, pool size and strides must be positive")
        sizes, size = [], IMAGE_SIZE
        for _ in self.filters:
            size = output_size(size, self.kernel_size, self.conv_stride, self.conv_padding)
            sizes.append(size)
            if self.pooling != "none":
                size = output_size(size, self.pool_size, self.pool_stride, "valid")
            sizes.append(size)
        if min(sizes) < 1:
            raise UserError(f"these conv/pool options shrink the 32×32 input to nothing: {sizes}")
        return sizes


FAMILY = Family(
    name="cnn",
    title="CNN architecture",
    run_fn="tfsp.trainers.cnn.model.run_fn",
    options=LeNetConfig,
    gate_lower_bound=0.97,
    default_epochs=30,
    default_learning_rate=2e-3,
    default_batch_size=32,
)
