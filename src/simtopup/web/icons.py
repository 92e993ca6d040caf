"""Draws the installable app's icons (run once; the PNGs are committed in static/web/icons/).

``python -m simtopup.web.icons`` rewrites them: a white SIM card with an upward arrow (top
up) on the site's blue. The maskable variant fills the whole square and keeps the drawing
inside the central 80 % safe zone, as launchers crop it to a circle or a squircle.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

BLUE = (11, 87, 208, 255)
WHITE = (255, 255, 255, 255)
ICONS = Path(__file__).resolve().parent / "static" / "web" / "icons"
# (file name, size in pixels, maskable)
SIZES = [
    ("icon-192.png", 192, False),
    ("icon-512.png", 512, False),
    ("icon-maskable-512.png", 512, True),
    ("apple-touch-icon.png", 180, True),
    ("favicon-32.png", 32, False),
]


def draw(size: int, maskable: bool) -> Image.Image:
    scale = 4  # drawn large, then scaled down: smooth edges without antialiasing support
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if maskable:
        pen.rectangle((0, 0, big, big), fill=BLUE)
        content = big * 0.62  # well inside the 80 % safe zone
    else:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 0.22, fill=BLUE)
        content = big * 0.74
    # The card: portrait, with the top-right corner cut off like a SIM.
    width, height = content * 0.62, content * 0.82
    left, top = (big - width) / 2, (big - height) / 2
    right, bottom = left + width, top + height
    cut = width * 0.28
    pen.polygon(
        [(left, top), (right - cut, top), (right, top + cut), (right, bottom), (left, bottom)],
        fill=WHITE,
    )
    # The arrow: up, in blue, on the card.
    cx = (left + right) / 2
    shaft = width * 0.16
    head_w, head_h = width * 0.56, height * 0.24
    arrow_top = top + height * 0.22
    arrow_bottom = bottom - height * 0.16
    pen.polygon(
        [
            (cx, arrow_top),
            (cx + head_w / 2, arrow_top + head_h),
            (cx + shaft / 2, arrow_top + head_h),
            (cx + shaft / 2, arrow_bottom),
            (cx - shaft / 2, arrow_bottom),
            (cx - shaft / 2, arrow_top + head_h),
            (cx - head_w / 2, arrow_top + head_h),
        ],
        fill=BLUE,
    )
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    for name, size, maskable in SIZES:
        icon = draw(size, maskable)
        if maskable:
            icon = icon.convert("RGB")  # opaque, as maskable and Apple icons should be
        icon.save(ICONS / name, optimize=True)


if __name__ == "__main__":
    main()
