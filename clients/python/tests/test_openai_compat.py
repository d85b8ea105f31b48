"""bindery's OpenAI-compatible `POST /v1/embeddings` (the HTTP API), through the official `openai`
package pointed at the server with `base_url`: text, typed items of other modalities through
`extra_body`, and the long-text policy both ways. Expected vectors come from the gRPC API."""

import base64

import numpy as np
import openai
import pytest
from conftest import FIXTURE_MODEL, FIXTURES

from bindery_client import Client

READ_WRITE_KEY = "rw-key-0123456789abcdef"


def api(server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{server.http_address}/v1", api_key=key, max_retries=0, timeout=60)


def test_text_matches_the_grpc_embeddings(server, client: Client) -> None:
    texts = ["a red cube", "a dog barking"]
    reply = api(server).embeddings.create(model=FIXTURE_MODEL, input=texts)
    expected = client.embed(texts).matrix()
    # The package asks for base64 and decodes it; both formats give the same floats.
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert [d.index for d in reply.data] == [0, 1]
    assert reply.model == FIXTURE_MODEL
    # "a red cube": 3 tokens, "a dog barking": 3, each with start and end tokens.
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 10
    floats = api(server).embeddings.create(model=FIXTURE_MODEL, input="a red cube", encoding_format="float")
    np.testing.assert_array_equal(np.array(floats.data[0].embedding, dtype=np.float32), expected[0])


def test_typed_items_through_extra_body(server, client: Client) -> None:
    image = FIXTURES / "images" / "png_rgb.png"
    audio = FIXTURES / "audio" / "cases" / "flac_no_extension"
    items = [
        {"type": "image", "data": base64.b64encode(image.read_bytes()).decode()},
        {"type": "audio", "data": "data:audio/flac;base64," + base64.b64encode(audio.read_bytes()).decode()},
        {"type": "text", "text": "a red cube"},
    ]
    # `input` is required by the package's signature; extra_body replaces it in the JSON sent.
    reply = api(server).embeddings.create(model=FIXTURE_MODEL, input="", extra_body={"input": items})
    expected = client.embed([image, audio.read_bytes(), "a red cube"]).matrix()
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=0)
    assert reply.usage.prompt_tokens == 5, "only the text counts tokens"


def test_dimensions_are_truncated_and_renormalised(server) -> None:
    reply = api(server).embeddings.create(model=FIXTURE_MODEL, input="a red cube", dimensions=8)
    vector = np.array(reply.data[0].embedding)
    assert vector.shape == (8,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)


def test_long_text_is_truncated_and_reported_or_refused(server) -> None:
    long_text = " ".join(["cat"] * 100)
    reply = api(server).embeddings.create(model=FIXTURE_MODEL, input=["a dog", long_text])
    assert reply.usage.prompt_tokens == 4 + 102
    assert reply.usage.model_extra["truncated_inputs"] == [1]
    with pytest.raises(openai.BadRequestError) as refused:
        api(server).embeddings.create(model=FIXTURE_MODEL, input=["a dog", long_text], extra_body={"truncate": False})
    assert "102 tokens" in str(refused.value) and "#1" in str(refused.value)


def test_errors_and_api_keys_reach_the_package_as_its_own_exceptions(start_server) -> None:
    keyed = start_server(env={"BINDERY_API_KEYS": READ_WRITE_KEY})
    with Client(keyed.address, api_key=READ_WRITE_KEY, timeout=60) as client:
        keyed.wait_serving(client)
    reply = api(keyed, READ_WRITE_KEY).embeddings.create(model=FIXTURE_MODEL, input="hello")
    assert len(reply.data) == 1
    with pytest.raises(openai.AuthenticationError):
        api(keyed, "not-a-configured-key-at-all").embeddings.create(model=FIXTURE_MODEL, input="hello")
    with pytest.raises(openai.NotFoundError) as unknown:
        api(keyed, READ_WRITE_KEY).embeddings.create(model="no-such-model", input="hello")
    assert "no-such-model" in str(unknown.value)
