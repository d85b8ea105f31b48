"""Embed, ListModels and errors against a real server."""

import numpy as np
import pytest
from conftest import DIMENSION, FIXTURE_MODEL, FIXTURES

from bindery_client import BinderyError, Client, Input, InvalidArgument, NotFound, Unavailable


def test_list_models_reports_the_fixture_model(client: Client) -> None:
    (model,) = client.list_models()
    assert model.name == FIXTURE_MODEL and model.is_default
    assert model.dimension == DIMENSION
    assert set(model.modalities) == {"text", "image", "audio", "point_cloud", "depth", "thermal", "imu", "video"}
    assert model.logit_scales["audio"] == pytest.approx(20.0)


def test_mixed_modalities_embed_in_order_with_sniffed_modalities(client: Client) -> None:
    image = FIXTURES / "images" / "jpeg_baseline.jpg"
    audio = FIXTURES / "audio" / "cases" / "flac_no_extension"
    cloud = FIXTURES / "point_cloud" / "cases" / "ascii_color.ply"
    result = client.embed(["a red cube", image, audio.read_bytes(), cloud])
    assert result.model == FIXTURE_MODEL
    assert [e.modality for e in result] == ["text", "image", "audio", "point_cloud"]
    assert result.ids == ["#0", str(image), "#2", str(cloud)]
    matrix = result.matrix()
    assert matrix.shape == (4, DIMENSION) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(np.asarray(result), matrix)
    # Distinct inputs, distinct vectors.
    assert len({row.tobytes() for row in matrix}) == 4


def test_the_same_input_embeds_the_same_whatever_its_batch(client: Client) -> None:
    image = FIXTURES / "images" / "png_rgb.png"
    alone = client.embed([image])[0].vector
    mixed = client.embed(["some text", image, "more text"])[1].vector
    np.testing.assert_allclose(alone, mixed, rtol=1e-5, atol=1e-6)


def test_sensor_modalities_through_the_override(client: Client) -> None:
    thermal = FIXTURES / "thermal" / "gray8_640x512.png"
    rng = np.random.default_rng(7)
    result = client.embed(
        [
            Input.file(thermal, modality="thermal", id="ir"),
            Input.imu(rng.standard_normal((6, 2000)), id="imu-values"),
            Input.file(FIXTURES / "imu" / "walk_50hz.csv", modality="imu", id="imu-csv"),
            Input.depth(FIXTURES / "depth" / "kinect_640x480.png", id="depth"),
        ]
    )
    assert [(e.id, e.modality) for e in result] == [
        ("ir", "thermal"),
        ("imu-values", "imu"),
        ("imu-csv", "imu"),
        ("depth", "depth"),
    ]
    # The same PNG as a thermal image and as an ordinary image goes through different towers.
    as_image = client.embed([thermal])[0]
    assert as_image.modality == "image"
    assert not np.allclose(as_image.vector, result[0].vector)


def test_modality_argument_applies_to_every_file(client: Client) -> None:
    files = [FIXTURES / "thermal" / "gray8_640x512.png", FIXTURES / "thermal" / "gray16_640x512.png"]
    result = client.embed(files, modality="thermal")
    assert [e.modality for e in result] == ["thermal", "thermal"]


def test_point_cloud_from_arrays_matches_the_same_points_from_a_file(client: Client) -> None:
    xyz = np.fromfile(FIXTURES / "point_cloud" / "cases" / "arrays.xyz.f32", dtype="<f4").reshape(-1, 3)
    rgb = np.fromfile(FIXTURES / "point_cloud" / "cases" / "arrays.rgb.u8", dtype=np.uint8).reshape(-1, 3)
    from_arrays = client.embed([Input.point_cloud(xyz=xyz, rgb=rgb)])[0]
    without_colour = client.embed([Input.point_cloud(xyz=xyz)])[0]
    assert from_arrays.modality == "point_cloud"
    assert not np.allclose(from_arrays.vector, without_colour.vector)


def test_raw_outputs_when_not_normalized(client: Client) -> None:
    raw = client.embed(["a red cube"], normalize=False)[0].vector
    unit = client.embed(["a red cube"])[0].vector
    np.testing.assert_allclose(raw / np.linalg.norm(raw), unit, rtol=1e-4, atol=1e-6)
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3


def test_a_bad_image_raises_invalid_argument_naming_the_input(client: Client) -> None:
    bad = FIXTURES / "images" / "not_an_image.bin"
    with pytest.raises(InvalidArgument) as caught:
        client.embed(["fine", Input.image(bad, id="holiday-photo")])
    error = caught.value
    assert isinstance(error, BinderyError)
    assert error.code_name == "INVALID_ARGUMENT"
    assert '"holiday-photo"' in error.message and "image" in error.message
    assert error.request_index == 0


def test_an_unknown_model_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.embed(["x"], model="no-such-model")
    assert "no-such-model" in caught.value.message


def test_default_address_comes_from_bindery_server(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDERY_SERVER", f"http://{server.address}")
    with Client() as from_environment:
        assert from_environment.target == server.address
        assert len(from_environment.embed(["hello"])) == 1


def test_no_server_raises_unavailable() -> None:
    with Client("127.0.0.1:1", timeout=5) as nowhere:
        with pytest.raises(Unavailable):
            nowhere.wait_ready(timeout=0.5)
        with pytest.raises(Unavailable) as caught:
            nowhere.embed(["x"])
        assert caught.value.code.name == "UNAVAILABLE"


def test_truncated_dimensions_are_renormalised(client: Client) -> None:
    full = client.embed(["a red cube"])[0].vector
    short = client.embed(["a red cube"], dimensions=8)[0].vector
    assert short.shape == (8,)
    np.testing.assert_allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-5)


@pytest.mark.parametrize(
    "encoding, tolerance", [("float16", 1e-3), ("bfloat16", 1e-2), ("int8", 1e-2), ("binary", None)]
)
def test_packed_encodings_decode_to_the_float_vectors(client: Client, encoding: str, tolerance) -> None:
    inputs = ["a red cube", FIXTURES / "images" / "png_rgb.png"]
    floats = client.embed(inputs).matrix()
    packed = client.embed(inputs, encoding=encoding)
    assert all(e.encoding == encoding and e.packed for e in packed)
    if tolerance is None:
        np.testing.assert_array_equal(packed.matrix(), (floats > 0).astype(np.float32))
        assert len(packed[0].packed) == DIMENSION // 8
    else:
        np.testing.assert_allclose(packed.matrix(), floats, atol=tolerance)
    with pytest.raises(ValueError, match="unknown encoding"):
        client.embed(inputs, encoding="float8")
