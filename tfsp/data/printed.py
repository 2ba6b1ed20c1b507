"""Printed digits, rendered from TrueType fonts, to train alongside the handwritten ones.

The 1,797 handwritten UCI digits alone teach a model little about printed ones: a CNN trained
on them, framed, got 0.625 right on digits printed in fonts it had not seen (prototype,
2026-12-05, 240 digits); with the renderings below in the training data, 0.925. The fonts are
the ones matplotlib ships (a pinned dependency), so every machine renders the same pixels.
Each rendering varies size, stroke width, position and polarity, then goes through the same
framing as every other source (tfsp/data/framing.py).
"""

from pathlib import Path

import numpy as np

from tfsp.core.features import NUM_CLASSES

# Upright and bold, serif, sans and monospaced. Italic and obliques, and the other families
# matplotlib ships (Computer Modern sans and typewriter, STIX italics), are left for tests
# to render as unseen fonts.
TRAINING_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "cmr10.ttf",
)
_CANVAS = 72  # px: room for the largest size at any offset


def font_path(name: str) -> Path:
    """A TrueType file that matplotlib ships, by file name."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib has no font {name} ({path})")
    return path


def render_digit(
    digit: int,
    font: str,
    *,
    size: int,
    stroke: int = 0,
    position: tuple[int, int] = (8, 4),
    dark_on_light: bool = True,
    canvas: int = _CANVAS,
) -> np.ndarray:
    """One digit drawn on a grey canvas [canvas, canvas] in [0, 1], as a user's image is."""
    from PIL import Image, ImageDraw, ImageFont

    ink, paper = (0, 255) if dark_on_light else (255, 0)
    image = Image.new("L", (canvas, canvas), paper)
    typeface = ImageFont.truetype(str(font_path(font)), size)
    ImageDraw.Draw(image).text(
        position, str(digit), fill=ink, font=typeface, stroke_width=stroke, stroke_fill=ink
    )
    return np.asarray(image, np.float32) / 255.0


def render_printed_digits(
    per_font: int, fonts: tuple[str, ...] = TRAINING_FONTS, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """`per_font` renderings of each digit in each font: (grey images, int64 labels)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for font in fonts:
        for digit in range(NUM_CLASSES):
            for _ in range(per_font):
                images.append(
                    render_digit(
                        digit,
                        font,
                        size=int(rng.integers(20, 48)),
                        stroke=int(rng.integers(0, 3)),
                        position=(int(rng.integers(2, 20)), int(rng.integers(0, 12))),
                        dark_on_light=bool(rng.integers(2)),
                    )
                )
                labels.append(digit)
    return images, np.asarray(labels, dtype=np.int64)
