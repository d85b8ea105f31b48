#!/usr/bin/env python3
"""Generate bindery's text and image golden files from the reference ImageBind pipeline.

    python tools/make_fixtures.py           # (re)write tests/fixtures/{text/cases.json,images/}
    python tools/make_fixtures.py --check    # regenerate into a temp dir, compare with the tree

Inputs go through ``imagebind.data.load_and_transform_text`` /
``load_and_transform_vision_data`` and the PyTorch fixture model (the same seeded model
``export_imagebind.py --fixture`` exports), one input per forward pass. The committed ONNX files
are then run on the same tensors as a consistency check only; the goldens never come from them.

Output is deterministic: running twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Pillow's note when the reference converts a palette PNG with per-index alpha to RGB; expected.
warnings.filterwarnings("ignore", message="Palette images with Transparency expressed in bytes")

from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "tests" / "fixtures"
DEFAULT_MODEL = REPO / "models" / "imagebind-fixture"
# The committed ONNX files must reproduce the PyTorch goldens to within this (text carries a
# logit scale of ~14, so its values are larger).
ONNX_TOLERANCE = 1e-4

# --------------------------------------------------------------------------------------------
# Text

_LONG = (
    "ImageBind learns a joint embedding across six different modalities: images, text, audio, "
    "depth, thermal, and IMU data. It does not need all combinations of paired data; image-paired "
    "data alone is enough to bind the modalities together. This paragraph keeps going well past "
    "the seventy-seven token context so that the tokenizer has to truncate it and keep the end "
    "token as the very last id, which is exactly what the reference implementation does."
)

#: (id, text). Each exercises a step of the reference cleanup or tokenisation.
TEXT_CASES: list[tuple[str, str]] = [
    ("plain_short", "a dog"),
    ("plain_sentence", "A photo of a cat sitting on a red sofa."),
    ("plain_pangram", "The quick brown fox jumps over the lazy dog"),
    ("single_char", "a"),
    ("punctuation_only", "."),
    ("punctuation_runs", "wait...what?!?! (yes) [no] {maybe} #tag @user ~~ --"),
    ("contractions", "It's what we'll do; they're sure I'd've and you'RE fine, DON'T"),
    ("numbers", "In 2024, 3.14159 apples cost $12,345.67 (or 1e-9%)"),
    ("url", "https://example.com/path/to?q=1&x=2#frag"),
    ("mixed_case", "HeLLo WoRLD, MiXeD CaSe"),
    ("accents_composed", "Café crème brûlée à la française, naïve résumé"),
    ("accents_decomposed", "Cafe\u0301 cre\u0300me bru\u0302le\u0301e"),
    ("german_eszett", "STRASSE und Straße"),
    ("cjk_japanese", "東京タワーの夜景"),
    ("cjk_chinese", "我爱北京天安门"),
    ("korean", "안녕하세요 세계"),
    ("cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок"),
    ("greek_final_sigma", "ΟΔΥΣΣΕΥΣ και ΣΙΣΥΦΟΣ"),
    ("turkish_dotted_i", "İstanbul'da IŞIK ılık İi Iı"),
    ("arabic", "مرحبا بالعالم"),
    ("devanagari", "नमस्ते दुनिया"),
    ("emoji", "I ❤️ pizza 🍕🍕 and 👩‍👩‍👧‍👦 in 🇯🇵"),
    ("html_amp", "Tom &amp; Jerry"),
    ("html_tags", "&lt;b&gt;bold&lt;/b&gt; text"),
    ("html_numeric", "it&#39;s &#x263A; &#169;"),
    ("html_double_escaped", "fish &amp;amp; chips &amp;lt;3"),
    ("curly_quotes", "\u201cHello,\u201d she said \u2014 \u2018it\u2019s fine\u2019\u2026"),
    ("ligatures", "\ufb01nancial \ufb02ow e\ufb03cient"),
    ("fullwidth", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３！"),
    ("mojibake", "The Mona Lisa doesnâ€™t have eyebrows."),
    ("whitespace_runs", "  lots   of\tspaces\n\nand\r\nnewlines  "),
    ("unicode_spaces", "non\u00a0breaking\u2003em\u3000ideographic\u200bzero-width"),
    ("control_chars", "bell\x07 and null\x00 chars\x1b[0m"),
    ("special_token_text", "<|startoftext|> hi <|endoftext|> there"),
    ("long_word", "supercalifragilisticexpialidocious " + "a" * 60),
    ("exactly_full", "a " * 75),
    ("one_over_full", "a " * 76),
    ("long_paragraph", _LONG),
    ("empty", ""),
    ("only_spaces", "   "),
    ("only_newline_tab", "\n\t"),
]


def _f32_list(t: torch.Tensor) -> list[float]:
    # The exact value of each float32 as a double, so any JSON reader recovers the same float32.
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def text_cases(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Reference tokens and tower output for each entry of ``TEXT_CASES``."""
    out = []
    for case_id, text in TEXT_CASES:
        tokens = ref.data.load_and_transform_text([text], "cpu")
        with torch.no_grad():
            emb = model({ref.ModalityType.TEXT: tokens})[ref.ModalityType.TEXT]
        out.append(
            {
                "id": case_id,
                "text": text,
                "tokens": [int(t) for t in tokens[0].tolist()],
                "embedding": _f32_list(emb[0]),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Images


def _content(w: int, h: int, seed: int, noise: float = 1.5) -> np.ndarray:
    """Seeded RGB test picture: smooth gradients, a few hard-edged shapes, light noise.

    Smooth so the files compress well; hard edges and noise so resampling errors show.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x /= max(w - 1, 1)
    y /= max(h - 1, 1)
    r = np.hypot(x - rng.uniform(0.2, 0.8), y - rng.uniform(0.2, 0.8))
    chans = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        f = rng.uniform(1, 4)
        chans.append(128 + 60 * a * x + 60 * b * y + 40 * c * np.cos(2 * np.pi * f * r))
    base = np.stack(chans, axis=-1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, 2) * w)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, 2) * h)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.uniform() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=color)
    arr = np.asarray(img).astype(np.float64)
    arr += rng.normal(0, noise, arr.shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _rgb(w: int, h: int, seed: int, noise: float = 1.5) -> Image.Image:
    return Image.fromarray(_content(w, h, seed, noise), "RGB")


def _alpha(w: int, h: int, seed: int) -> np.ndarray:
    """Alpha with every regime: a gradient, a fully transparent block, a fully opaque block."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = (255 * (x + y) / max(w + h - 2, 1)).astype(np.float64)
    a += 30 * np.sin(x / max(w, 1) * 7 + rng.uniform(0, 6))
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a[h // 8 : h // 3, w // 8 : w // 2] = 0
    a[2 * h // 3 :, 2 * w // 3 :] = 255
    return a


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2, depth 16), written per the PNG spec since Pillow cannot."""
    h, w, _ = arr.shape
    rows = np.frombuffer(arr.astype(">u2").tobytes(), np.uint8).reshape(h, w * 6)
    # Filter type 1 (Sub): each byte minus the same byte of the previous pixel (6 bytes back).
    sub = rows.copy()
    sub[:, 6:] = rows[:, 6:] - rows[:, :-6]
    raw = b"".join(b"\x01" + sub[row].tobytes() for row in range(h))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _save(img: Image.Image, fmt: str, **opts: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def _jpeg(img: Image.Image, **opts: Any) -> bytes:
    return _save(img, "JPEG", quality=opts.pop("quality", 90), **opts)


def _png(img: Image.Image, **opts: Any) -> bytes:
    return _save(img, "PNG", optimize=False, compress_level=9, **opts)


def _palette(w: int, h: int, seed: int, colors: int = 64) -> Image.Image:
    return _rgb(w, h, seed, noise=0).quantize(colors, dither=Image.Dither.NONE)


def _gray16(w: int, h: int, seed: int) -> bytes:
    # Left half stays below 256 and right half spans the full 16-bit range, so both sides of
    # Pillow's clamp in the I;16 -> RGB conversion are covered.
    g = _content(w, h, seed, noise=0)[..., 0].astype(np.uint32)
    v = g * 257
    v[:, : w // 2] = g[:, : w // 2]
    img = Image.fromarray(v.astype(np.uint16))
    if img.mode != "I;16":
        raise ValueError(f"16-bit grayscale came out as {img.mode}")
    return _png(img)


def _rgb16(w: int, h: int, seed: int) -> bytes:
    base = _content(w, h, seed, noise=0).astype(np.uint32) * 257
    # Low bytes unrelated to the high bytes (a compressible ramp), so 16 -> 8 bit rounding and
    # truncation give different results.
    y, x = np.mgrid[0:h, 0:w].astype(np.uint32)
    low = ((x * 7 + y * 13)[..., None] + np.array([0, 85, 170], np.uint32)) & 0xFF
    return _png16_rgb(((base & 0xFF00) | low).astype(np.uint16))


def _exif_rotated(w: int, h: int, seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display; the reference ignores it.
    return _jpeg(_rgb(w, h, seed), exif=exif)


def _rgba(w: int, h: int, seed: int, lossless_webp: bool = False) -> bytes:
    img = _rgb(w, h, seed, noise=0.5).convert("RGBA")
    img.putalpha(Image.fromarray(_alpha(w, h, seed), "L"))
    if lossless_webp:
        return _save(img, "WEBP", lossless=True, quality=100, method=4, exact=True)
    return _png(img)


def _palette_trns(w: int, h: int, seed: int) -> bytes:
    img = _palette(w, h, seed, colors=32)
    alphas = bytes(int(v) for v in np.linspace(0, 255, 32).round())
    return _png(img, transparency=alphas)


def _bilevel(w: int, h: int, seed: int) -> Image.Image:
    return _rgb(w, h, seed, noise=0).convert("L").convert("1", dither=Image.Dither.NONE)


def _la(w: int, h: int, seed: int) -> bytes:
    g = Image.fromarray(_content(w, h, seed, noise=0.5)[..., 1], "L")
    img = Image.merge("LA", (g, Image.fromarray(_alpha(w, h, seed), "L")))
    return _png(img)


#: (id, file name, bytes builder, store the preprocessed tensor too)
IMAGE_CASES: list[tuple[str, str, Callable[[], bytes], bool]] = [
    ("jpeg_baseline", "jpeg_baseline.jpg", lambda: _jpeg(_rgb(400, 300, 1)), True),
    (
        "jpeg_progressive",
        "jpeg_progressive.jpg",
        lambda: _jpeg(_rgb(300, 400, 2), quality=85, progressive=True, optimize=True),
        False,
    ),
    ("jpeg_444", "jpeg_444.jpg", lambda: _jpeg(_rgb(320, 240, 3), subsampling=0), False),
    ("jpeg_gray", "jpeg_gray.jpg", lambda: _jpeg(_rgb(320, 240, 4).convert("L")), False),
    ("jpeg_cmyk", "jpeg_cmyk.jpg", lambda: _jpeg(_rgb(320, 240, 5).convert("CMYK")), True),
    ("jpeg_exif_rotated", "jpeg_exif_rotated.jpg", lambda: _exif_rotated(320, 240, 6), False),
    (
        "jpeg_strip_wide",
        "jpeg_strip_wide.jpg",
        lambda: _jpeg(_rgb(5000, 200, 7), quality=80),
        True,
    ),
    (
        "jpeg_strip_tall",
        "jpeg_strip_tall.jpg",
        lambda: _jpeg(_rgb(200, 5000, 8), quality=80),
        False,
    ),
    ("png_rgb", "png_rgb.png", lambda: _png(_rgb(320, 240, 9, noise=0.5)), False),
    ("png_rgba", "png_rgba.png", lambda: _rgba(300, 300, 10), True),
    ("png_palette", "png_palette.png", lambda: _png(_palette(320, 240, 11)), True),
    ("png_palette_trns", "png_palette_trns.png", lambda: _palette_trns(240, 320, 12), False),
    (
        "png_gray",
        "png_gray.png",
        lambda: _png(_rgb(256, 256, 13, noise=0.5).convert("L")),
        False,
    ),
    ("png_la", "png_la.png", lambda: _la(256, 256, 14), False),
    ("png_gray16", "png_gray16.png", lambda: _gray16(256, 256, 15), False),
    ("png_rgb16", "png_rgb16.png", lambda: _rgb16(256, 256, 16), True),
    (
        "png_bilevel",
        "png_bilevel.png",
        lambda: _png(_bilevel(256, 256, 17)),
        False,
    ),
    ("png_1x1", "png_1x1.png", lambda: _png(Image.new("RGB", (1, 1), (200, 30, 90))), False),
    ("png_333x177", "png_333x177.png", lambda: _png(_rgb(333, 177, 18, noise=0.5)), False),
    ("png_225x224", "png_225x224.png", lambda: _png(_rgb(225, 224, 19, noise=0.5)), False),
    ("png_224x225", "png_224x225.png", lambda: _png(_rgb(224, 225, 20, noise=0.5)), False),
    (
        "png_upscale_223x500",
        "png_upscale_223x500.png",
        lambda: _png(_rgb(223, 500, 21, noise=0.5)),
        False,
    ),
    (
        "webp_lossy",
        "webp_lossy.webp",
        lambda: _save(_rgb(320, 240, 22), "WEBP", quality=80, method=4),
        False,
    ),
    (
        "webp_lossless_alpha",
        "webp_lossless_alpha.webp",
        lambda: _rgba(256, 256, 23, lossless_webp=True),
        False,
    ),
    ("gif_palette", "gif_palette.gif", lambda: _save(_palette(320, 240, 24), "GIF"), False),
    ("bmp_rgb24", "bmp_rgb24.bmp", lambda: _save(_rgb(256, 192, 25), "BMP"), False),
    ("bmp_pal8", "bmp_pal8.bmp", lambda: _save(_palette(256, 192, 26), "BMP"), False),
    (
        "tiff_rgb",
        "tiff_rgb.tif",
        lambda: _save(_rgb(200, 150, 27), "TIFF", compression=None),
        False,
    ),
    (
        "tiff_rgb_lzw",
        "tiff_rgb_lzw.tif",
        lambda: _save(_rgb(256, 192, 28, noise=0), "TIFF", compression="tiff_lzw"),
        False,
    ),
    (
        "tiff_cmyk",
        "tiff_cmyk.tif",
        lambda: _save(_rgb(256, 192, 29, noise=0).convert("CMYK"), "TIFF", compression="tiff_lzw"),
        False,
    ),
]


def _error_files() -> dict[str, bytes]:
    """Inputs the reference rejects; no golden embedding."""
    whole = _jpeg(_rgb(320, 240, 30))
    rng = np.random.default_rng(31)
    return {
        "corrupt_truncated.jpg": whole[: len(whole) // 2],
        "not_an_image.bin": b"\x00\x01junk" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
    }


def image_cases(model: torch.nn.Module, out_dir: Path) -> list[dict[str, Any]]:
    """Write the image inputs into ``out_dir`` and return their reference goldens."""
    pixels_dir = out_dir / "pixels"
    pixels_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, name, build, keep_pixels in IMAGE_CASES:
        path = out_dir / name
        path.write_bytes(build())
        with Image.open(path) as im:
            mode, size = im.mode, [int(im.size[0]), int(im.size[1])]
        pixels = ref.data.load_and_transform_vision_data([str(path)], "cpu")
        with torch.no_grad():
            emb = model({ref.ModalityType.VISION: pixels})[ref.ModalityType.VISION]
        pixel_file = None
        if keep_pixels:
            pixel_file = f"pixels/{case_id}.f32"
            arr = pixels[0].numpy().astype("<f4", copy=False)
            if arr.shape != (3, 224, 224):
                raise ValueError(f"{case_id}: unexpected tensor shape {arr.shape}")
            (out_dir / pixel_file).write_bytes(np.ascontiguousarray(arr).tobytes())
        cases.append(
            {
                "id": case_id,
                "file": name,
                "mode": mode,
                "size": size,
                "embedding": _f32_list(emb[0]),
                "pixels": pixel_file,
            }
        )
    for name, payload in _error_files().items():
        (out_dir / name).write_bytes(payload)
    return cases


# --------------------------------------------------------------------------------------------
# Output


def _dump_cases(cases: list[dict[str, Any]], path: Path) -> None:
    """JSON with one key per line and arrays kept on one line, so diffs stay readable."""
    lines = ["["]
    for i, case in enumerate(cases):
        lines.append("  {")
        items = list(case.items())
        for j, (key, value) in enumerate(items):
            sep = "," if j + 1 < len(items) else ""
            lines.append(f"    {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{sep}")
        lines.append("  }," if i + 1 < len(cases) else "  }")
    lines.append("]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_onnx(
    model_dir: Path, text: list[dict[str, Any]], images: Path, image: list[dict[str, Any]]
) -> None:
    """Run the committed towers on the reference inputs; they must match the PyTorch goldens."""
    text_s = _session(model_dir / "text.onnx")
    tokens = np.array([c["tokens"] for c in text], dtype=np.int64)
    (got,) = text_s.run(None, {"tokens": tokens})
    text_diff = float(np.max(np.abs(got - np.array([c["embedding"] for c in text], np.float32))))

    vision_s = _session(model_dir / "vision.onnx")
    paths = [str(images / c["file"]) for c in image]
    pixels = ref.data.load_and_transform_vision_data(paths, "cpu").numpy()
    (got,) = vision_s.run(None, {"pixels": pixels})
    image_diff = float(np.max(np.abs(got - np.array([c["embedding"] for c in image], np.float32))))

    print(f"onnxruntime vs goldens, max abs diff: text {text_diff:.3e}, image {image_diff:.3e}")
    if max(text_diff, image_diff) > ONNX_TOLERANCE:
        raise SystemExit(
            f"{model_dir} does not match the fixture model; re-run export_imagebind.py --fixture"
        )


def generate(root: Path, model_dir: Path) -> None:
    """Write ``root/text/cases.json`` and ``root/images/**``."""
    # One thread: the reduction order, hence the last bits of every golden, stays fixed.
    torch.set_num_threads(1)
    model = ref.build_fixture_model()
    text = text_cases(model)
    _dump_cases(text, root / "text" / "cases.json")
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    image = image_cases(model, images_dir)
    _dump_cases(image, images_dir / "cases.json")
    _check_onnx(model_dir, text, images_dir, image)
    print(f"{len(text)} text cases, {len(image)} image cases written under {root}")


def _owned_files(root: Path) -> set[str]:
    files = {"text/cases.json"}
    images = root / "images"
    if images.is_dir():
        # images/formats/ belongs to tools/make_image_format_fixtures.py.
        files |= {
            str(p.relative_to(root))
            for p in images.rglob("*")
            if p.is_file() and p.relative_to(images).parts[0] != "formats"
        }
    return files


def check(root: Path, model_dir: Path) -> int:
    """Regenerate into a temp dir; report any file that differs from ``root``."""
    return goldens.check_regenerated(root, model_dir, generate, _owned_files)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_FIXTURES, help="fixtures root")
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_MODEL, help="fixture model folder"
    )
    args = parser.parse_args()
    if args.check:
        raise SystemExit(check(args.out, args.model_dir))
    generate(args.out, args.model_dir)


if __name__ == "__main__":
    main()
