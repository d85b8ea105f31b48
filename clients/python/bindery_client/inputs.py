"""Inputs to embed: text, files whose modality is recognised from their content, and arrays.

A `str` is text; a `pathlib.Path` (or any `os.PathLike`) or `bytes` is a file whose modality is
sniffed from its first bytes, falling back on the file extension. `Input` builds one explicitly,
for the sensor modalities (depth, thermal, IMU) that cannot be told apart from ordinary images or
tables by content, or to set an id or a format option.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from ._proto import pb

#: Modality names, as used throughout the client ("point_cloud" for 3D point clouds).
MODALITIES: tuple[str, ...] = ("text", "image", "audio", "point_cloud", "depth", "thermal", "imu", "video")

#: A file given by path or by its bytes.
FileSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
#: Anything `Client.embed` accepts as one input.
InputLike = Union["Input", str, "os.PathLike[str]", bytes, bytearray, memoryview]

_MODALITY_TO_PROTO: dict[str, pb.Modality] = {
    "text": pb.MODALITY_TEXT,
    "image": pb.MODALITY_IMAGE,
    "audio": pb.MODALITY_AUDIO,
    "point_cloud": pb.MODALITY_POINT_CLOUD,
    "depth": pb.MODALITY_DEPTH,
    "thermal": pb.MODALITY_THERMAL,
    "imu": pb.MODALITY_IMU,
    "video": pb.MODALITY_VIDEO,
}
_PROTO_TO_MODALITY: dict[int, str] = {value: name for name, value in _MODALITY_TO_PROTO.items()}

# Point-cloud format hints the server knows; any other extension is left out, since the server
# refuses an unknown hint rather than sniffing.
_POINT_CLOUD_HINTS = {"ply", "pcd", "xyz", "pts", "csv", "txt", "xyzrgb", "npy", "obj"}
_EXTENSION_MODALITY: dict[str, str] = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp"), "image"),
    **dict.fromkeys(("wav", "flac", "ogg", "oga", "mp3", "m4a", "aac"), "audio"),
    **dict.fromkeys(("ply", "pcd", "xyz", "pts", "xyzrgb", "obj", "npy", "csv"), "point_cloud"),
    **dict.fromkeys(("mov", "m4v", "mkv", "webm", "avi"), "video"),
}
_AUDIO_MP4_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"mp41", b"mp42", b"isom", b"iso2", b"dash"}
_OBJ_KEYWORDS = {"v", "vn", "vt", "f", "o", "g", "s", "mtllib", "usemtl"}
_SNIFF_BYTES = 4096


def modality_to_proto(name: str) -> pb.Modality:
    """The proto enum value of a modality name such as "image"."""
    try:
        return _MODALITY_TO_PROTO[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)}") from None


def modality_from_proto(value: int) -> str:
    """The modality name of a proto enum value ("unspecified" for 0)."""
    return _PROTO_TO_MODALITY.get(value, "unspecified")


def sniff_modality(head: bytes) -> str | None:
    """The modality a file's first bytes announce, or None when they announce none.

    Recognised: JPEG, PNG, GIF, BMP, TIFF and WebP images; WAV, FLAC, Ogg, MP3 (ID3 tag or MPEG
    frame sync) and MP4 audio; PLY, PCD, OBJ and NPY point clouds.
    """
    if (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*"))
        or (head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00")
        or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")
    ):
        return "image"
    if (
        (head.startswith(b"RIFF") and head[8:12] == b"WAVE")
        or head.startswith((b"fLaC", b"OggS", b"ID3"))
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
        or (head[4:8] == b"ftyp" and head[8:12] in _AUDIO_MP4_BRANDS)
    ):
        return "audio"
    if head.startswith((b"\x93NUMPY", b"ply\n", b"ply\r\n")):
        return "point_cloud"
    return "point_cloud" if _is_pcd_or_obj(head) else None


def _is_pcd_or_obj(head: bytes) -> bool:
    """Whether text begins like a PCD header or an OBJ file (comments skipped)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as cut:
        # A multi-byte character cut at the end of the sniffed bytes is fine.
        text = head[: cut.start].decode("utf-8") if cut.start > 0 else ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# .PCD"):
            return True
        if not line or line.startswith(("#", "//")):
            continue
        word = line.split()[0]
        return word in ("VERSION", "FIELDS") or word in _OBJ_KEYWORDS
    return False


def detect_modality(source: FileSource) -> str:
    """The modality of a file, from its content, else its extension.

    Raises:
        ValueError: when neither tells; pass the modality explicitly then.
    """
    path: Path | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:_SNIFF_BYTES])
        what = f"{len(source)} bytes"
    else:
        path = Path(source)
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
        what = str(path)
    found = sniff_modality(head)
    if found is None and path is not None:
        found = _EXTENSION_MODALITY.get(path.suffix.lower().lstrip("."))
    if found is None:
        raise ValueError(
            f"cannot tell the modality of {what} from its content or extension; "
            "pass modality= (e.g. Input.file(path, modality='thermal'))"
        )
    return found


class Input:
    """One input to embed, classify, compare or store.

    Build one with the constructors (`Input.text`, `Input.file`, `Input.image`, `Input.audio`,
    `Input.point_cloud`, `Input.depth`, `Input.thermal`, `Input.imu`, `Input.video`). Files given by
    path are read only when the request carrying them is built.

    Attributes:
        modality: the modality name, e.g. "image".
        id: the id sent with the input, echoed in embeddings and error messages; None lets the
            client choose (the path for a file given by path, else the position "#0", "#1", ...).
    """

    __slots__ = ("modality", "id", "_text", "_source", "_format_hint", "_fields")

    def __init__(
        self,
        modality: str,
        *,
        id: str | None = None,
        text: str | None = None,
        source: FileSource | None = None,
        format_hint: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        modality_to_proto(modality)  # validates the name
        self.modality = modality
        self.id = id
        self._text = text
        self._source: bytes | Path | None = _normalise_source(source)
        if format_hint is None and isinstance(self._source, Path):
            format_hint = _hint_from_extension(self._source, modality)
        self._format_hint = format_hint or ""
        self._fields = fields or {}

    def __repr__(self) -> str:
        if self._text is not None:
            what = repr(self._text if len(self._text) <= 40 else self._text[:37] + "...")
        elif isinstance(self._source, Path):
            what = repr(str(self._source))
        elif self._source is not None:
            what = f"<{len(self._source)} bytes>"
        else:
            what = "<arrays>"
        return f"Input({self.modality}, {what}, id={self.id!r})"

    @classmethod
    def text(cls, text: str, *, id: str | None = None) -> Input:
        """A text input."""
        return cls("text", id=id, text=text)

    @classmethod
    def file(
        cls,
        source: FileSource,
        *,
        modality: str | None = None,
        id: str | None = None,
        format_hint: str | None = None,
    ) -> Input:
        """A file (path or bytes) of any modality, sniffed from its content unless `modality`
        says otherwise. A `str` here is a path. Depth maps, thermal images and IMU files need
        `modality` ("depth", "thermal", "imu"): their content looks like an image or a table."""
        if modality is None:
            modality = detect_modality(source)
        if modality == "text":
            raise ValueError("Input.file cannot make a text input; pass the text as a str")
        return cls(modality, id=id, source=source, format_hint=format_hint)

    @classmethod
    def image(cls, source: FileSource, *, id: str | None = None) -> Input:
        """An encoded image: JPEG, PNG, WebP, GIF, BMP or TIFF."""
        return cls("image", id=id, source=source)

    @classmethod
    def audio(cls, source: FileSource, *, id: str | None = None, format_hint: str | None = None) -> Input:
        """An audio file: WAV, FLAC, MP3, Ogg Vorbis or AAC in MP4/M4A."""
        return cls("audio", id=id, source=source, format_hint=format_hint)

    @classmethod
    def point_cloud(
        cls,
        source: FileSource | None = None,
        *,
        xyz: Any = None,
        rgb: Any = None,
        id: str | None = None,
        format_hint: str | None = None,
    ) -> Input:
        """A point cloud: a file (PLY, PCD, XYZ/PTS/CSV, NPY, OBJ) or arrays.

        Args:
            xyz: coordinates, shape (N, 3), used when no file is given.
            rgb: colours, shape (N, 3): floats in [0, 1], or uint8 values 0-255.
        """
        if (source is None) == (xyz is None):
            raise ValueError("Input.point_cloud needs a file or xyz, not both")
        fields: dict[str, Any] = {}
        if xyz is not None:
            fields["xyz"] = _packed_floats(xyz, 3, "xyz")
            if rgb is not None:
                colours = np.asarray(rgb)
                if colours.dtype == np.uint8:
                    fields["rgb_u8"] = _packed(colours, 3, "rgb").tobytes()
                else:
                    fields["rgb"] = _packed_floats(colours, 3, "rgb")
        elif rgb is not None:
            raise ValueError("rgb goes with xyz, not with a file")
        return cls("point_cloud", id=id, source=source, format_hint=format_hint, fields=fields)

    @classmethod
    def depth(
        cls,
        source: FileSource,
        *,
        id: str | None = None,
        format_hint: str | None = None,
        depth_scale: float = 0.0,
        baseline_m: float = 0.0,
        focal_px: float = 0.0,
    ) -> Input:
        """A depth map: 16-bit PNG/TIFF, float32 NPY in metres, or an 8-bit grayscale image.

        Args:
            depth_scale: metres per unit of a 16-bit map (0: the model's value).
            baseline_m: stereo baseline in metres for the disparity conversion (0: the model's).
            focal_px: focal length in pixels for the disparity conversion (0: the model's).
        """
        fields = {"depth_scale": depth_scale, "baseline_m": baseline_m, "focal_px": focal_px}
        return cls("depth", id=id, source=source, format_hint=format_hint, fields=fields)

    @classmethod
    def thermal(cls, source: FileSource, *, id: str | None = None, format_hint: str | None = None) -> Input:
        """A thermal (infrared) image: 8- or 16-bit, single channel or RGB."""
        return cls("thermal", id=id, source=source, format_hint=format_hint)

    @classmethod
    def video(cls, source: FileSource, *, id: str | None = None, format_hint: str | None = None) -> Input:
        """An encoded video (MP4, MOV, MKV, WebM, AVI, ...); needs a server built with video."""
        return cls("video", id=id, source=source, format_hint=format_hint)

    @classmethod
    def imu(
        cls,
        values: Any = None,
        *,
        channels: int | None = None,
        source: FileSource | None = None,
        sample_rate_hz: float = 0.0,
        id: str | None = None,
        format_hint: str | None = None,
    ) -> Input:
        """An inertial measurement series, as values or as a CSV/NPY file.

        Args:
            values: shape (channels, samples), or flat channel-major with `channels` (default 6:
                accelerometer x, y, z, then gyroscope x, y, z).
            source: a CSV file whose header names the columns, or an NPY of shape (6, T) or (T, 6).
            sample_rate_hz: the series' rate; 0 means the model's own rate (no resampling).
        """
        if (values is None) == (source is None):
            raise ValueError("Input.imu needs values or a source file, not both")
        fields: dict[str, Any] = {"sample_rate_hz": sample_rate_hz}
        if values is not None:
            array = np.asarray(values, dtype=np.float32)
            if array.ndim == 2:
                if channels not in (None, array.shape[0]):
                    raise ValueError(f"values have {array.shape[0]} channels (rows), not {channels}")
                channels = array.shape[0]
            elif array.ndim == 1:
                channels = channels or 6
                if array.size % channels:
                    raise ValueError(f"{array.size} values do not split into {channels} channels")
            else:
                raise ValueError(f"IMU values must be 1-D or (channels, samples), not shape {array.shape}")
            fields["values"] = array.reshape(-1).tolist()
            fields["channels"] = channels
        return cls("imu", id=id, source=source, format_hint=format_hint, fields=fields)

    def with_id(self, id: str) -> Input:
        """A copy of this input carrying `id`."""
        copy = Input.__new__(Input)
        for slot in Input.__slots__:
            setattr(copy, slot, getattr(self, slot))
        copy.id = id
        return copy

    def id_or(self, fallback: str) -> str:
        """The id to send: `id` when set, else the path of a file given by path, else `fallback`
        (the caller passes the input's position, "#0", "#1", ..., as the server would)."""
        if self.id is not None:
            return self.id
        return str(self._source) if isinstance(self._source, Path) else fallback

    def to_proto(self, id: str) -> Any:
        """The `bindery.v1.Input` message, reading the file now if it was given by path."""
        if self.modality == "text":
            return pb.Input(id=id, text=self._text)
        data = self._read()
        hint = self._format_hint
        if self.modality == "image":
            return pb.Input(id=id, image=data)
        if self.modality == "audio":
            return pb.Input(id=id, audio=pb.Audio(data=data, format_hint=hint))
        if self.modality == "point_cloud":
            return pb.Input(id=id, point_cloud=pb.PointCloud(data=data, format_hint=hint, **self._fields))
        if self.modality == "depth":
            return pb.Input(id=id, depth_map=pb.Depth(data=data, format_hint=hint, **self._fields))
        if self.modality == "thermal":
            return pb.Input(id=id, thermal_image=pb.Thermal(data=data, format_hint=hint))
        if self.modality == "video":
            return pb.Input(id=id, video=pb.Video(data=data, format_hint=hint))
        return pb.Input(id=id, imu=pb.Imu(data=data, format_hint=hint, **self._fields))

    def _read(self) -> bytes:
        if isinstance(self._source, Path):
            return self._source.read_bytes()
        return self._source or b""


def as_input(value: InputLike, modality: str | None = None) -> Input:
    """Turns what a caller passed into an `Input`: a str is text, a path or bytes a file
    (of `modality` when given, else sniffed); an `Input` is returned as it is."""
    if isinstance(value, Input):
        return value
    if isinstance(value, str):
        return Input.text(value)
    if isinstance(value, (bytes, bytearray, memoryview, os.PathLike)):
        return Input.file(value, modality=modality)
    raise TypeError(
        f"cannot embed a {type(value).__name__}: pass a str (text), a pathlib.Path or bytes "
        "(a file), or an Input"
    )


def _normalise_source(source: FileSource | None) -> bytes | Path | None:
    if source is None:
        return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source)


def _hint_from_extension(path: Path, modality: str) -> str | None:
    extension = path.suffix.lower().lstrip(".")
    if not extension or modality in ("image", "text"):
        return None
    if modality == "point_cloud" and extension not in _POINT_CLOUD_HINTS:
        return None
    return extension


def _packed(array: Any, width: int, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), not {array.shape}")
    return np.ascontiguousarray(array)


def _packed_floats(array: Any, width: int, name: str) -> Sequence[float]:
    return _packed(np.asarray(array, dtype=np.float32), width, name).reshape(-1).tolist()
