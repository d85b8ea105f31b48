#!/usr/bin/env python3
"""Generate bindery's per-format image goldens: one tiny sample file for every format the pinned
Pillow opens, and Pillow's own ``Image.open(f).convert("RGB")`` pixels for each.

    python tools/make_image_format_fixtures.py           # (re)write tests/fixtures/images/formats/
    python tools/make_image_format_fixtures.py --check   # regenerate into a temp dir, compare

Samples are written by Pillow where Pillow can write the format, and built here byte by byte
(the smallest header Pillow's plugin accepts) where it only reads it. Each sample is then opened
by Pillow: ``cases.json`` records the format Pillow identified, its mode and size, and either
the RGB pixels (``pixels/<id>.rgb``, raw 8-bit RGB, row-major) or the error Pillow raised while
loading. ``cases.json`` also lists every format Pillow registers an opener for
(``Image.OPEN``), so the Rust test can check that its table of formats covers exactly those.
No model is involved and the output is deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL
from PIL import Image, features

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "tests" / "fixtures"
SUBDIR = Path("images") / "formats"

# The IM writer is deprecated in Pillow 13 but still what the format's own files look like.
warnings.filterwarnings("ignore", category=DeprecationWarning)

W, H = 13, 9


def _rgb_array(w: int = W, h: int = H, seed: int = 0) -> np.ndarray:
    """Gradients plus noise, so that every channel and position differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 9 % 256], -1)
    return np.clip(base + rng.integers(-20, 21, size=base.shape), 0, 255).astype(np.uint8)


def _rgb(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    return Image.fromarray(_rgb_array(w, h, seed), "RGB")


def _rgba(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    img = _rgb(w, h, seed)
    alpha = np.random.default_rng(seed + 100).integers(0, 256, size=(h, w)).astype(np.uint8)
    img.putalpha(Image.fromarray(alpha, "L"))
    return img


def _gray(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    return _rgb(w, h, seed).convert("L")


def _palette(w: int = W, h: int = H, seed: int = 0, colors: int = 16) -> Image.Image:
    return _rgb(w, h, seed).quantize(colors, dither=Image.Dither.NONE)


def _save(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _u16_gray(w: int = W, h: int = H) -> np.ndarray:
    # Values on both sides of 255: Pillow clips "I;16" at 255 when converting to RGB.
    return (np.arange(w * h, dtype=np.uint32).reshape(h, w) * 97 % 600).astype(np.uint16)


def _u16_samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, size=n).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# TIFF layouts Pillow reads but does not write, written here as one uncompressed strip.


def _tiff(
    w: int,
    h: int,
    bits: list[int],
    photometric: int,
    data: bytes,
    *,
    big_endian: bool = False,
    colormap: list[int] | None = None,
    extra_samples: list[int] | None = None,
    sample_format: int | None = None,
) -> bytes:
    e = ">" if big_endian else "<"
    entries: list[tuple[int, int, list[int]]] = []  # (tag, type, values); 3 SHORT, 4 LONG

    def add(tag: int, typ: int, values: list[int]) -> None:
        entries.append((tag, typ, values))

    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, bits)
    add(259, 3, [1])
    add(262, 3, [photometric])
    add(273, 4, [0])  # patched below
    add(277, 3, [len(bits)])
    add(278, 4, [h])
    add(279, 4, [len(data)])
    add(284, 3, [1])
    if colormap is not None:
        add(320, 3, colormap)
    if extra_samples is not None:
        add(338, 3, extra_samples)
    if sample_format is not None:
        add(339, 3, [sample_format] * len(bits))
    entries.sort()
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()
    extra_at = 8 + ifd_size
    packed = []
    for tag, typ, values in entries:
        fmt = "H" if typ == 3 else "I"
        raw = struct.pack(e + fmt * len(values), *values)
        if len(raw) <= 4:
            packed.append((tag, typ, len(values), raw.ljust(4, b"\0")))
        else:
            packed.append((tag, typ, len(values), struct.pack(e + "I", extra_at + len(extra))))
            extra += raw
            if len(extra) % 2:
                extra += b"\0"
    data_at = extra_at + len(extra)
    out = bytearray((b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8))
    out += struct.pack(e + "H", len(packed))
    for tag, typ, count, value in packed:
        if tag == 273:
            value = struct.pack(e + "I", data_at)
        out += struct.pack(e + "HHI", tag, typ, count) + value
    out += struct.pack(e + "I", 0)
    return bytes(out + extra + data)


def _pack_bits(indices: np.ndarray, bits: int) -> bytes:
    """Rows packed MSB first, each padded to a byte."""
    rows = []
    per = 8 // bits
    for row in indices:
        padded = np.concatenate([row, np.zeros((-len(row)) % per, dtype=row.dtype)])
        acc = np.zeros(len(padded) // per, dtype=np.uint8)
        for k in range(per):
            acc |= (padded[k::per].astype(np.uint8) << (8 - bits * (k + 1))).astype(np.uint8)
        rows.append(acc.tobytes())
    return b"".join(rows)


def _colormap(entries: int, seed: int) -> list[int]:
    # Full 16-bit values, so that taking the high byte (what Pillow does) is visible.
    return [int(v) for v in _u16_samples(3 * entries, seed)]


def _tiff_palette(bits: int, big_endian: bool = False) -> bytes:
    rng = np.random.default_rng(bits)
    idx = rng.integers(0, 1 << bits, size=(H, W)).astype(np.uint8)
    data = idx.tobytes() if bits == 8 else _pack_bits(idx, bits)
    return _tiff(W, H, [bits], 3, data, big_endian=big_endian, colormap=_colormap(1 << bits, bits))


def _tiff16(channels: int, photometric: int, big_endian: bool, seed: int, **kw: Any) -> bytes:
    samples = _u16_samples(W * H * channels, seed)
    data = samples.astype(">u2" if big_endian else "<u2").tobytes()
    return _tiff(W, H, [16] * channels, photometric, data, big_endian=big_endian, **kw)


def _tiff_multipage() -> bytes:
    return _save(_rgb(seed=1), "TIFF", save_all=True, append_images=[_rgb(seed=2), _gray(seed=3)])


# --------------------------------------------------------------------------------------------
# Formats Pillow only reads (or whose writer needs an external handler): the smallest file its
# plugin identifies. Where the plugin can also decode it, the pixels are real.


def _cur() -> bytes:
    # A .cur file is an .ico file with resource type 2 and a hotspot where the planes/bpp are.
    ico = bytearray(_save(_rgb(16, 16), "ICO", sizes=[(16, 16)], bitmap_format="bmp"))
    ico[2] = 2
    return bytes(ico)


def _dcx() -> bytes:
    pcx = _save(_rgb(), "PCX")
    return struct.pack("<III", 0x3ADE68B1, 12, 0) + pcx


def _fits() -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
        f"NAXIS1  = {W:>20}",
        f"NAXIS2  = {H:>20}",
        "END",
    ]
    header = "".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii")
    data = np.asarray(_gray()).tobytes()
    return header + data.ljust(2880, b"\0")


def _fli() -> bytes:
    idx = np.asarray(_palette(colors=16))
    pal = np.zeros(256 * 3, dtype=np.uint8)
    used = _palette(colors=16).getpalette() or []
    pal[: len(used)] = used
    # FLI_COLOR256 (type 4): one packet, skip 0, count 0 (= 256 colours).
    color = struct.pack("<HBB", 1, 0, 0) + pal.tobytes()
    color_chunk = struct.pack("<IH", 6 + len(color), 4) + color
    # FLI_COPY (type 16): the indices as they are.
    copy = idx.tobytes()
    copy_chunk = struct.pack("<IH", 6 + len(copy), 16) + copy
    if len(copy_chunk) % 2:
        copy_chunk += b"\0"
        copy_chunk = struct.pack("<I", len(copy_chunk)) + copy_chunk[4:]
    chunks = color_chunk + copy_chunk
    frame = struct.pack("<IHH8x", 16 + len(chunks), 0xF1FA, 2) + chunks
    head = bytearray(128)
    struct.pack_into("<IHHHHHH", head, 0, 128 + len(frame), 0xAF12, 1, W, H, 8, 0)
    return bytes(head) + frame


def _ftex() -> bytes:
    data = _rgb_array(4, 4).tobytes()
    return b"FTEX" + struct.pack("<IIIIIII", 1, 4, 4, 1, 1, 1, 32) + struct.pack("<I", len(data)) + data


def _gbr() -> bytes:
    name = b"bindery\0"
    header = struct.pack(">IIIII", 28 + len(name), 2, W, H, 1) + b"GIMP" + struct.pack(">I", 10)
    return header + name + np.asarray(_gray()).tobytes()


def _imt() -> bytes:
    return f"width {W}\nheight {H}\npixel n8\n".encode() + b"\x0c" + np.asarray(_gray()).tobytes()


def _iptc() -> bytes:
    def field(rec: int, tag: int, value: bytes) -> bytes:
        return bytes([0x1C, rec, tag]) + struct.pack(">H", len(value)) + value

    head = (
        field(3, 20, struct.pack(">H", W))
        + field(3, 30, struct.pack(">H", H))
        + field(3, 60, bytes([1, 0]))
        + field(3, 120, bytes([1]))  # raw
    )
    return head + field(8, 10, np.asarray(_gray()).tobytes())


def _mcidas() -> bytes:
    w = [0] * 64
    # Words are numbered from 1 in Pillow's reader: w[9] lines, w[10] elements, w[11] bytes per
    # element, w[14] bands, w[15] line prefix, w[34] data offset.
    w[0:8] = [0, 4, 0, 0, 0, 0, 0, 0]
    w[8], w[9], w[10], w[13], w[14], w[33] = H, W, 1, 1, 0, 256
    return struct.pack(">64i", *w) + np.asarray(_gray()).tobytes()


def _mpeg() -> bytes:
    # Sequence header: 12-bit width and height.
    return b"\x00\x00\x01\xb3" + bytes([W >> 4, ((W & 15) << 4) | (H >> 8), H & 255]) + b"\x14" + b"\0" * 8


def _pcd() -> bytes:
    # Only the header Pillow's opener checks: a Photo CD overview has "PCD_IPI" at 2048.
    return b"\0" * 2048 + b"PCD_IPI" + b"\0" * (1539 - 7)


def _pixar() -> bytes:
    head = bytearray(512)
    head[0:4] = b"\200\350\000\000"
    struct.pack_into("<HH", head, 416, H, W)
    struct.pack_into("<HH", head, 424, 14, 2)  # 8-bit RGB
    return bytes(head).ljust(1024, b"\0") + _rgb_array().tobytes()


def _psd() -> bytes:
    planes = np.asarray(_rgb()).transpose(2, 0, 1).tobytes()
    return (
        b"8BPS"
        + struct.pack(">H6xHIIHH", 1, 3, H, W, 8, 3)
        + struct.pack(">III", 0, 0, 0)
        + struct.pack(">H", 0)
        + planes
    )


def _sun() -> bytes:
    data = np.asarray(_rgb())[..., ::-1]  # type 1: BGR
    row = W * 3
    rows = b"".join(bytes(r) + b"\0" * (row % 2) for r in data.reshape(H, row))
    return struct.pack(">8I", 0x59A66A95, W, H, 24, len(rows), 1, 0, 0) + rows


def _xpm() -> bytes:
    colors = ["#000000", "#FF8000", "#2040C0", "#FFFFFF"]
    idx = np.random.default_rng(7).integers(0, 4, size=(H, W))
    lines = [f'"{W} {H} 4 1",'] + [f'"{"abcd"[i]} c {c}",' for i, c in enumerate(colors)]
    lines += ['"' + "".join("abcd"[v] for v in row) + '",' for row in idx]
    return ("/* XPM */\nstatic char *x[] = {\n" + "\n".join(lines) + "\n};\n").encode()


def _xvthumb() -> bytes:
    data = np.random.default_rng(8).integers(0, 256, size=W * H).astype(np.uint8).tobytes()
    return b"P7 332\n#XVVERSION:Version 2.28\n#END_OF_COMMENTS\n" + f"{W} {H} 255\n".encode() + data


def _icns() -> bytes:
    # One 16x16 PNG element: Pillow's writer always adds every size up to 1024x1024.
    png = _save(_rgba(16, 16), "PNG")
    element = b"icp4" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(element)) + element


def _pnm(magic: str, maxval: int | None, samples: np.ndarray, plain: bool = False) -> bytes:
    """A PBM/PGM/PPM with any maxval, binary (16-bit big-endian above 255) or plain text."""
    h, w = samples.shape[:2]
    head = f"{magic}\n{w} {h}\n" + ("" if maxval is None else f"{maxval}\n")
    if plain:
        return head.encode() + "\n".join(" ".join(str(int(v)) for v in row.ravel()) for row in samples).encode() + b"\n"
    return head.encode() + samples.astype(">u2" if (maxval or 0) > 255 else np.uint8).tobytes()


def _levels(maxval: int, channels: int, seed: int) -> np.ndarray:
    shape = (H, W, channels) if channels > 1 else (H, W)
    return np.random.default_rng(seed).integers(0, maxval + 1, size=shape)


def _pfm() -> bytes:
    data = (np.asarray(_gray(), dtype="<f4") / 255.0)[::-1]
    return f"Pf\n{W} {H}\n-1.0\n".encode() + data.tobytes()


def _tga16() -> bytes:
    # Uncompressed true colour, 16 bits per pixel (A1R5G5B5, little-endian), bottom-up.
    px = np.random.default_rng(41).integers(0, 1 << 15, size=(H, W)).astype("<u2")
    head = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, W, H, 16, 0)
    return head + px.tobytes()


def _stub(prefix: bytes) -> Callable[[], bytes]:
    return lambda: prefix


def _wmf() -> bytes:
    # Placeable metafile header (key, handle, bbox, inch, reserved, checksum), then a header.
    head = struct.pack("<IHhhhhHI", 0x9AC6CDD7, 0, 0, 0, W * 10, H * 10, 1440, 0)
    checksum = 0
    for (v,) in struct.iter_unpack("<H", head):
        checksum ^= v
    return head + struct.pack("<H", checksum) + struct.pack("<HHHIHIH", 1, 9, 0x300, 12, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# AVIF layouts Pillow reads but does not write (its encoder writes 8-bit BT.601 only), written by
# libavif's own avifenc (Debian libavif-bin) from a PNG. One thread, fixed quantizers: the output
# is deterministic.


def _avifenc(img: Image.Image, *args: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.png", Path(tmp) / "out.avif"
        img.save(src)
        cmd = ["avifenc", "-j", "1", "-c", "aom", "-s", "6", "--min", "12", "--max", "12"]
        cmd += ["--minalpha", "12", "--maxalpha", "12", *args, str(src), str(dst)]
        subprocess.run(cmd, check=True, capture_output=True)
        return dst.read_bytes()


def _avif_nclx_says(data: bytes, matrix: int, full_range: bool) -> bytes:
    """``data`` with its colour box changed (the AV1 sequence header keeps what it says): libavif
    takes the box's description over the sequence header's."""
    at = data.index(b"colrnclx") + 8
    out = bytearray(data)
    out[at + 4 : at + 6] = struct.pack(">H", matrix)
    out[at + 6] = 0x80 if full_range else 0
    return bytes(out)


# --------------------------------------------------------------------------------------------
# (id, file name, format Pillow must identify it as, bytes builder)
CASES: list[tuple[str, str, str, Callable[[], bytes]]] = [
    # Decoded by bindery.
    ("jpeg", "jpeg.jpg", "JPEG", lambda: _save(_rgb(), "JPEG", quality=90)),
    ("mpo", "mpo.mpo", "MPO", lambda: _save(_rgb(seed=1), "MPO", save_all=True, append_images=[_rgb(seed=2)])),
    ("png", "png.png", "PNG", lambda: _save(_rgb(), "PNG")),
    ("gif", "gif.gif", "GIF", lambda: _save(_palette(), "GIF")),
    ("bmp", "bmp.bmp", "BMP", lambda: _save(_rgb(), "BMP")),
    ("webp", "webp.webp", "WEBP", lambda: _save(_rgb(), "WEBP", lossless=True)),
    ("tiff_rgb", "tiff_rgb.tif", "TIFF", lambda: _save(_rgb(), "TIFF")),
    ("tiff_rgba_deflate", "tiff_rgba_deflate.tif", "TIFF", lambda: _save(_rgba(), "TIFF", compression="tiff_adobe_deflate")),
    ("tiff_gray_packbits", "tiff_gray_packbits.tif", "TIFF", lambda: _save(_gray(), "TIFF", compression="packbits")),
    ("tiff_bilevel_g4", "tiff_bilevel_g4.tif", "TIFF", lambda: _save(_gray().convert("1"), "TIFF", compression="group4")),
    ("tiff_la", "tiff_la.tif", "TIFF", lambda: _save(_gray().convert("LA"), "TIFF")),
    ("tiff_cmyk", "tiff_cmyk.tif", "TIFF", lambda: _save(_rgb().convert("CMYK"), "TIFF")),
    ("tiff_cmyk_lzw", "tiff_cmyk_lzw.tif", "TIFF", lambda: _save(_rgb(seed=4).convert("CMYK"), "TIFF", compression="tiff_lzw")),
    ("tiff_cmyk16_le", "tiff_cmyk16_le.tif", "TIFF", lambda: _tiff16(4, 5, False, 11)),
    ("tiff_cmyk16_be", "tiff_cmyk16_be.tif", "TIFF", lambda: _tiff16(4, 5, True, 12)),
    ("tiff_gray16_le", "tiff_gray16_le.tif", "TIFF", lambda: _save(Image.fromarray(_u16_gray()), "TIFF")),
    ("tiff_gray16_be", "tiff_gray16_be.tif", "TIFF", lambda: _tiff(W, H, [16], 1, _u16_gray().astype(">u2").tobytes(), big_endian=True)),
    ("tiff_rgb16_le", "tiff_rgb16_le.tif", "TIFF", lambda: _tiff16(3, 2, False, 13)),
    ("tiff_rgb16_be", "tiff_rgb16_be.tif", "TIFF", lambda: _tiff16(3, 2, True, 14)),
    ("tiff_rgba16_le", "tiff_rgba16_le.tif", "TIFF", lambda: _tiff16(4, 2, False, 15, extra_samples=[2])),
    ("tiff_int32", "tiff_int32.tif", "TIFF", lambda: _save(Image.fromarray(_u16_gray().astype(np.int32) - 100), "TIFF")),
    ("tiff_float32", "tiff_float32.tif", "TIFF", lambda: _save(Image.fromarray(_u16_gray().astype(np.float32) / 2 - 20.5), "TIFF")),
    ("tiff_palette8", "tiff_palette8.tif", "TIFF", lambda: _save(_palette(colors=40), "TIFF")),
    ("tiff_palette8_lzw", "tiff_palette8_lzw.tif", "TIFF", lambda: _save(_palette(seed=5, colors=200), "TIFF", compression="tiff_lzw")),
    ("tiff_palette8_raw16", "tiff_palette8_raw16.tif", "TIFF", lambda: _tiff_palette(8)),
    ("tiff_palette4", "tiff_palette4.tif", "TIFF", lambda: _tiff_palette(4)),
    ("tiff_palette2_be", "tiff_palette2_be.tif", "TIFF", lambda: _tiff_palette(2, big_endian=True)),
    ("tiff_palette1", "tiff_palette1.tif", "TIFF", lambda: _tiff_palette(1)),
    ("tiff_gray4", "tiff_gray4.tif", "TIFF", lambda: _tiff(W, H, [4], 1, _pack_bits(np.asarray(_gray()) >> 4, 4))),
    ("tiff_multipage", "tiff_multipage.tif", "TIFF", _tiff_multipage),
    ("tiff_jpeg", "tiff_jpeg.tif", "TIFF", lambda: _save(_rgb(16, 16), "TIFF", compression="jpeg")),
    ("tiff_ycbcr", "tiff_ycbcr.tif", "TIFF", lambda: _save(_rgb().convert("YCbCr"), "TIFF")),
    ("avif", "avif.avif", "AVIF", lambda: _save(_rgb(), "AVIF", quality=90)),
    ("avif_lossless", "avif_lossless.avif", "AVIF", lambda: _save(_rgb(), "AVIF", quality=100, subsampling="4:4:4")),
    ("avif_422", "avif_422.avif", "AVIF", lambda: _save(_rgb(seed=21), "AVIF", quality=80, subsampling="4:2:2")),
    ("avif_limited", "avif_limited.avif", "AVIF", lambda: _save(_rgb(seed=22), "AVIF", quality=80, range="limited")),
    ("avif_rgba", "avif_rgba.avif", "AVIF", lambda: _save(_rgba(seed=23), "AVIF", quality=80)),
    ("avif_even", "avif_even.avif", "AVIF", lambda: _save(_rgb(16, 10, seed=24), "AVIF", quality=70)),
    ("avif_64x48_q40", "avif_64x48_q40.avif", "AVIF", lambda: _save(_rgb(64, 48, seed=37), "AVIF", quality=40)),
    ("avif_1x1", "avif_1x1.avif", "AVIF", lambda: _save(_rgb(1, 1, seed=25), "AVIF")),
    ("avif10_420", "avif10_420.avif", "AVIF", lambda: _avifenc(_rgb(seed=26), "-d", "10", "-y", "420")),
    ("avif10_444", "avif10_444.avif", "AVIF", lambda: _avifenc(_rgb(seed=27), "-d", "10", "-y", "444")),
    ("avif10_420_rgba", "avif10_420_rgba.avif", "AVIF", lambda: _avifenc(_rgba(seed=28), "-d", "10", "-y", "420")),
    ("avif10_422_rgba", "avif10_422_rgba.avif", "AVIF", lambda: _avifenc(_rgba(seed=29), "-d", "10", "-y", "422")),
    ("avif10_444_rgba", "avif10_444_rgba.avif", "AVIF", lambda: _avifenc(_rgba(seed=30), "-d", "10", "-y", "444")),
    ("avif_bt709_limited", "avif_bt709_limited.avif", "AVIF", lambda: _avifenc(_rgb(seed=31), "-y", "420", "--cicp", "1/13/1", "-r", "limited")),
    ("avif_bt2020_full", "avif_bt2020_full.avif", "AVIF", lambda: _avifenc(_rgb(seed=32), "-d", "10", "-y", "420", "--cicp", "9/16/9", "-r", "full")),
    ("avif_nclx_over_av1", "avif_nclx_over_av1.avif", "AVIF", lambda: _avif_nclx_says(_avifenc(_rgb(seed=38), "-y", "420", "--cicp", "1/13/1", "-r", "limited"), 6, True)),
    ("avif_premultiplied", "avif_premultiplied.avif", "AVIF", lambda: _save(_rgba(seed=33), "AVIF", alpha_premultiplied=True)),
    ("avif_mono", "avif_mono.avif", "AVIF", lambda: _avifenc(_rgb(seed=34), "-y", "400")),
    ("avif12", "avif12.avif", "AVIF", lambda: _avifenc(_rgb(seed=35), "-d", "12", "-y", "420")),
    ("avif_identity", "avif_identity.avif", "AVIF", lambda: _avifenc(_rgb(seed=36), "-y", "444", "--cicp", "1/13/0")),
    ("qoi", "qoi.qoi", "QOI", lambda: _save(_rgba(), "QOI")),
    ("ppm_p6", "ppm_p6.ppm", "PPM", lambda: _save(_rgb(), "PPM")),
    ("ppm_p5", "ppm_p5.pgm", "PPM", lambda: _save(_gray(), "PPM")),
    ("ppm_p4", "ppm_p4.pbm", "PPM", lambda: _save(_gray().convert("1"), "PPM")),
    ("ppm_p5_16", "ppm_p5_16.pgm", "PPM", lambda: _save(Image.fromarray(_u16_gray()), "PPM")),
    ("ppm_p6_1000", "ppm_p6_1000.ppm", "PPM", lambda: _pnm("P6", 1000, _levels(1000, 3, 42))),
    ("ppm_p6_65535", "ppm_p6_65535.ppm", "PPM", lambda: _pnm("P6", 65535, _levels(65535, 3, 54))),
    ("ppm_p6_100", "ppm_p6_100.ppm", "PPM", lambda: _pnm("P6", 100, _levels(100, 3, 43))),
    ("ppm_p5_15", "ppm_p5_15.pgm", "PPM", lambda: _pnm("P5", 15, _levels(15, 1, 44))),
    ("ppm_p5_4000", "ppm_p5_4000.pgm", "PPM", lambda: _pnm("P5", 4000, _levels(4000, 1, 45))),
    ("ppm_p3_plain", "ppm_p3_plain.ppm", "PPM", lambda: _pnm("P3", 255, _levels(255, 3, 46), plain=True)),
    ("ppm_p2_plain_100", "ppm_p2_plain_100.pgm", "PPM", lambda: _pnm("P2", 100, _levels(100, 1, 47), plain=True)),
    ("ppm_p1_plain", "ppm_p1_plain.pbm", "PPM", lambda: _pnm("P1", None, _levels(1, 1, 48), plain=True)),
    ("ppm_pfm", "ppm_pfm.pfm", "PPM", _pfm),
    ("tga_rgb", "tga_rgb.tga", "TGA", lambda: _save(_rgb(), "TGA")),
    ("tga_rgb_top", "tga_rgb_top.tga", "TGA", lambda: _save(_rgb(seed=49), "TGA", orientation=1)),
    ("tga_gray_rle", "tga_gray_rle.tga", "TGA", lambda: _save(_gray(seed=50), "TGA", compression="tga_rle")),
    ("tga_16", "tga_16.tga", "TGA", _tga16),
    ("tga_rgba_rle", "tga_rgba_rle.tga", "TGA", lambda: _save(_rgba(), "TGA", compression="tga_rle")),
    ("tga_palette", "tga_palette.tga", "TGA", lambda: _save(_palette(), "TGA")),
    ("ico", "ico.ico", "ICO", lambda: _save(_rgba(16, 16), "ICO", sizes=[(16, 16)])),
    ("ico_sizes", "ico_sizes.ico", "ICO", lambda: _save(_rgba(48, 48, seed=51), "ICO", sizes=[(16, 16), (48, 48), (32, 32)])),
    ("ico_bmp24", "ico_bmp24.ico", "ICO", lambda: _save(_rgb(32, 32, seed=52), "ICO", sizes=[(32, 32)], bitmap_format="bmp")),
    ("dds_rgb", "dds_rgb.dds", "DDS", lambda: _save(_rgb(12, 8), "DDS")),
    ("dds_dxt1", "dds_dxt1.dds", "DDS", lambda: _save(_rgb(12, 8), "DDS", pixel_format="DXT1")),
    ("dib", "dib.dib", "DIB", lambda: _save(_rgb(), "DIB")),
    # Refused by bindery, each with its format named.
    ("blp", "blp.blp", "BLP", lambda: _save(_palette(), "BLP")),
    ("bufr", "bufr.bufr", "BUFR", _stub(b"BUFR" + b"\0" * 28)),
    ("cur", "cur.cur", "CUR", _cur),
    ("pcx", "pcx.pcx", "PCX", lambda: _save(_rgb(), "PCX")),
    ("dcx", "dcx.dcx", "DCX", _dcx),
    ("eps", "eps.eps", "EPS", lambda: _save(_rgb(), "EPS")),
    ("fits", "fits.fits", "FITS", _fits),
    ("fli", "fli.fli", "FLI", _fli),
    ("ftex", "ftex.ftu", "FTEX", _ftex),
    ("gbr", "gbr.gbr", "GBR", _gbr),
    ("grib", "grib.grib", "GRIB", _stub(b"GRIB\0\0\0\x01" + b"\0" * 24)),
    ("hdf5", "hdf5.h5", "HDF5", _stub(b"\x89HDF\r\n\x1a\n" + b"\0" * 24)),
    ("jpeg2000", "jpeg2000.jp2", "JPEG2000", lambda: _save(_rgb(), "JPEG2000")),
    ("jpeg2000_j2k", "jpeg2000_j2k.j2k", "JPEG2000", lambda: _save(_rgb(), "JPEG2000", no_jp2=True)),
    ("icns", "icns.icns", "ICNS", _icns),
    ("im", "im.im", "IM", lambda: _save(_rgb(), "IM")),
    ("imt", "imt.imt", "IMT", _imt),
    ("iptc", "iptc.iptc", "IPTC", _iptc),
    ("mcidas", "mcidas.area", "MCIDAS", _mcidas),
    ("mpeg", "mpeg.mpg", "MPEG", _mpeg),
    ("msp", "msp.msp", "MSP", lambda: _save(_gray().convert("1"), "MSP")),
    ("pcd", "pcd.pcd", "PCD", _pcd),
    ("pixar", "pixar.pxr", "PIXAR", _pixar),
    ("psd", "psd.psd", "PSD", _psd),
    ("sgi", "sgi.sgi", "SGI", lambda: _save(_rgb(), "SGI")),
    ("spider", "spider.spi", "SPIDER", lambda: _save(_gray().convert("F"), "SPIDER")),
    ("sun", "sun.ras", "SUN", _sun),
    ("wmf", "wmf.wmf", "WMF", _wmf),
    ("xbm", "xbm.xbm", "XBM", lambda: _save(_gray().convert("1"), "XBM")),
    ("xpm", "xpm.xpm", "XPM", _xpm),
    ("xvthumb", "xvthumb.xv", "XVTHUMB", _xvthumb),
]


def _open(data: bytes) -> dict[str, Any]:
    """What Pillow makes of ``data``: format, mode, size, and RGB pixels or the load error."""
    with Image.open(io.BytesIO(data)) as im:
        info: dict[str, Any] = {"format": im.format, "mode": im.mode, "size": list(im.size)}
        try:
            rgb = im.convert("RGB")
        except Exception as e:  # noqa: BLE001 - any load failure is the golden
            info["error"] = f"{type(e).__name__}: {e}"
            return info
    info["rgb"] = np.asarray(rgb, dtype=np.uint8).tobytes()
    return info


def generate(root: Path, _model_dir: Path | None = None) -> None:
    """Write ``root/images/formats/``: the samples, ``pixels/*.rgb`` and ``cases.json``."""
    out = root / SUBDIR
    (out / "pixels").mkdir(parents=True, exist_ok=True)
    Image.init()
    cases = []
    seen = set()
    for case_id, name, fmt, build in CASES:
        data = build()
        (out / name).write_bytes(data)
        info = _open(data)
        if info["format"].upper() != fmt:
            raise SystemExit(f"{case_id}: Pillow opened it as {info['format']}, expected {fmt}")
        case: dict[str, Any] = {"id": case_id, "file": name, "format": fmt, **{k: info[k] for k in ("mode", "size")}}
        if "rgb" in info:
            pixels = f"pixels/{case_id}.rgb"
            (out / pixels).write_bytes(info["rgb"])
            case["pixels"] = pixels
        else:
            case["pillow_error"] = info["error"]
        cases.append(case)
        # MPO files open through the JPEG opener: Image.OPEN has no MPO entry.
        seen.add("JPEG" if fmt == "MPO" else fmt)
    opened = sorted(Image.OPEN)
    missing = sorted(set(opened) - seen)
    if missing:
        raise SystemExit(f"no sample for {', '.join(missing)}")
    doc = {
        "pillow": PIL.__version__,
        "avif": bool(features.check("avif")),
        "open_formats": opened,
        "cases": cases,
    }
    (out / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(cases)} samples for {len(opened)} formats written under {out}")


def _owned_files(root: Path) -> set[str]:
    folder = root / SUBDIR
    if not folder.is_dir():
        return set()
    return {str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_FIXTURES, help="fixtures root")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(goldens.check_regenerated(args.out, Path(), generate, _owned_files))
    generate(args.out)


if __name__ == "__main__":
    main()
