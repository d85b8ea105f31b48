"""Similarity and Classify against a real server."""

import numpy as np
import pytest
from conftest import FIXTURES

from bindery_client import Client, InvalidArgument

IMAGE = FIXTURES / "images" / "png_rgb.png"
AUDIO = FIXTURES / "audio" / "cases" / "wav16k_mono_s16_5s.wav"


def test_similarity_is_the_cosine_of_the_embeddings(client: Client) -> None:
    queries = ["a red cube", "a dog barking"]
    candidates = [IMAGE, AUDIO, "a cube"]
    result = client.similarity(queries, candidates)
    assert result.cosine.shape == (2, 3)
    assert result.logits is None and result.probabilities is None
    q = client.embed(queries).matrix()
    c = client.embed(candidates).matrix()
    np.testing.assert_allclose(result.cosine, q @ c.T, atol=1e-5)


def test_similarity_with_vectors_and_softmax(client: Client) -> None:
    embedded = client.embed(["a red cube", IMAGE])
    vector = embedded[1].vector
    result = client.similarity([embedded[0], "a red cube"], [vector, list(-vector)], softmax=True)
    # An Embedding and the text it came from give the same row.
    np.testing.assert_allclose(result.cosine[0], result.cosine[1], atol=1e-5)
    np.testing.assert_allclose(result.cosine[:, 1], -result.cosine[:, 0], atol=1e-5)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Softmax over (cos, -cos) favours whichever is positive.
    assert (result.probabilities[0, 0] > result.probabilities[0, 1]) == (result.cosine[0, 0] > 0)


def test_classify_ranks_labels_and_reports_probabilities(client: Client) -> None:
    labels = ["cat", "dog", "cube", "sphere"]
    result = client.classify([IMAGE, AUDIO], labels, templates=["a photo of a {}.", "a {}"], top_k=2)
    assert result.labels == labels
    assert [c.modality for c in result] == ["image", "audio"]
    for classification in result:
        assert classification.probabilities.shape == (4,)
        assert classification.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert len(classification.top) == 2
        best = int(np.argmax(classification.probabilities))
        assert classification.label == labels[best]
        assert classification.top[0].probability >= classification.top[1].probability
    assert result.probabilities().shape == (2, 4)
    # Asking again finds the labels in the server's label cache.
    again = client.classify([IMAGE], labels, templates=["a photo of a {}.", "a {}"])
    assert again.label_cache_hits == 4
    np.testing.assert_allclose(again[0].probabilities, result[0].probabilities, atol=1e-6)


def test_classify_refuses_more_top_labels_than_labels(client: Client) -> None:
    with pytest.raises(InvalidArgument):
        client.classify([IMAGE], ["cat", "dog"], top_k=3)
