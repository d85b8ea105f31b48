"""Modality sniffing, input building, address parsing and batch splitting (no server needed)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from bindery_client import BatchLimits, Input, detect_modality
from bindery_client._batching import ENTRY_OVERHEAD, chunk
from bindery_client._connection import parse_address
from bindery_client._operations import _similarity_grid
from bindery_client.inputs import as_input

# Raw packed arrays, not files a reader would recognise.
NOT_FILES = {"arrays.rgb.u8", "arrays.xyz.f32"}


def _files(folder: str, *, exclude=()):
    found = sorted(p for p in (FIXTURES / folder).iterdir() if p.is_file() and p.name not in exclude)
    assert found, f"no fixtures in {folder}"
    return found


@pytest.mark.parametrize(
    "path", _files("images", exclude={"cases.json", "not_an_image.bin"}), ids=lambda p: p.name
)
def test_images_are_sniffed_as_images(path: Path) -> None:
    assert detect_modality(path) == "image"
    assert detect_modality(path.read_bytes()) == "image"


@pytest.mark.parametrize("path", _files("audio/cases"), ids=lambda p: p.name)
def test_audio_files_are_sniffed_as_audio(path: Path) -> None:
    # By content alone: the folder has a FLAC without extension and a WAV named .mp3.
    assert detect_modality(path.read_bytes()) == "audio"


@pytest.mark.parametrize("path", _files("point_cloud/cases", exclude=NOT_FILES), ids=lambda p: p.name)
def test_point_clouds_are_recognised_by_content_or_extension(path: Path) -> None:
    assert detect_modality(path) == "point_cloud"


def test_binary_point_cloud_formats_are_recognised_without_extension() -> None:
    for name in ("binary_le_20k.ply", "binary_12k.pcd", "f32.npy", "points.obj", "ascii_nan.pcd"):
        assert detect_modality((FIXTURES / "point_cloud/cases" / name).read_bytes()) == "point_cloud", name


def test_unrecognised_content_asks_for_the_modality() -> None:
    with pytest.raises(ValueError, match="modality="):
        detect_modality(FIXTURES / "images" / "not_an_image.bin")
    with pytest.raises(ValueError, match="modality="):
        detect_modality(b"just some bytes")


def test_values_become_inputs_by_type() -> None:
    assert as_input("a red cube").modality == "text"
    assert as_input(FIXTURES / "images" / "png_rgb.png").modality == "image"
    # The override wins over sniffing: a grey PNG as a thermal image.
    assert as_input(FIXTURES / "thermal" / "gray8_640x512.png", "thermal").modality == "thermal"
    with pytest.raises(TypeError):
        as_input(42)


def test_file_inputs_carry_their_path_as_id_and_extension_as_hint() -> None:
    path = FIXTURES / "imu" / "walk_50hz.csv"
    message = Input.file(path, modality="imu").to_proto(Input.file(path, modality="imu").id_or("#0"))
    assert message.id == str(path)
    assert message.imu.format_hint == "csv"
    assert message.imu.data == path.read_bytes()
    assert Input.text("x").id_or("#3") == "#3"
    assert Input.text("x", id="mine").id_or("#3") == "mine"


def test_imu_values_are_sent_channel_major() -> None:
    values = np.arange(12, dtype=np.float32).reshape(2, 6).T  # 6 channels x 2 samples
    message = Input.imu(values, sample_rate_hz=50).to_proto("imu")
    assert message.imu.channels == 6
    assert list(message.imu.values) == values.reshape(-1).tolist()
    assert message.imu.sample_rate_hz == 50
    with pytest.raises(ValueError):
        Input.imu(np.zeros(7))  # not a multiple of the default 6 channels


def test_point_cloud_arrays_pack_xyz_and_byte_colours() -> None:
    xyz = np.array([[0, 0, 0], [1, 2, 3]], dtype=np.float64)
    rgb = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    cloud = Input.point_cloud(xyz=xyz, rgb=rgb).to_proto("pc").point_cloud
    assert list(cloud.xyz) == [0, 0, 0, 1, 2, 3]
    assert cloud.rgb_u8 == rgb.tobytes()
    with pytest.raises(ValueError):
        Input.point_cloud(xyz=np.zeros((4, 2)))


def test_addresses() -> None:
    assert parse_address("localhost:1234") == ("localhost:1234", None)
    assert parse_address("example.org") == ("example.org:50051", None)
    assert parse_address("http://10.0.0.1:8080/") == ("10.0.0.1:8080", False)
    assert parse_address("https://bindery.example.org") == ("bindery.example.org:443", True)
    assert parse_address("[::1]:9000") == ("[::1]:9000", None)
    assert parse_address("[::1]") == ("[::1]:50051", None)
    with pytest.raises(ValueError):
        parse_address("ftp://host:1")


def test_default_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BINDERY_SERVER", raising=False)
    assert parse_address(None) == ("127.0.0.1:50051", None)
    monkeypatch.setenv("BINDERY_SERVER", "https://embed.example.org:8443")
    assert parse_address(None) == ("embed.example.org:8443", True)


def test_chunk_respects_count_and_bytes_and_keeps_order() -> None:
    sizes = [10, 10, 10, 500, 10, 10]
    groups = list(chunk(range(len(sizes)), sizes.__getitem__, 2, 100))
    assert groups == [[0, 1], [2], [3], [4, 5]]
    assert sum(groups, []) == list(range(len(sizes)))
    # Byte budget including the per-entry overhead: exactly two 10-byte entries fit.
    assert list(chunk([10, 10, 10], int, 10, 2 * (10 + ENTRY_OVERHEAD))) == [[10, 10], [10]]


def test_similarity_grid_keeps_every_request_under_the_limits() -> None:
    limits = BatchLimits(max_items=8, max_request_bytes=10_000)
    for rows, cols in [(3, 3), (20, 2), (2, 20), (20, 20)]:
        row_ranges, col_ranges = _similarity_grid([100] * rows, [100] * cols, limits)
        assert row_ranges[0][0] == 0 and row_ranges[-1][1] == rows
        assert col_ranges[0][0] == 0 and col_ranges[-1][1] == cols
        for r0, r1 in row_ranges:
            for c0, c1 in col_ranges:
                assert (r1 - r0) + (c1 - c0) <= limits.max_items, (rows, cols)
