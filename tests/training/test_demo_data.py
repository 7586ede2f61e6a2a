import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer

from training.demo_data import MAX_CHARS, MIN_WORDS, TEXT_TOPICS, demo_images, demo_text


@pytest.fixture(scope="module")
def text():
    return demo_text()


@pytest.fixture(scope="module")
def images():
    return demo_images()


def all_rows(dataset):
    return dataset.train, dataset.test


@pytest.mark.parametrize("name", ["text", "images"])
def test_splits_have_unique_disjoint_ids_and_one_hot_labels(name, request):
    dataset = request.getfixturevalue(name)
    train, test = all_rows(dataset)
    ids = train.ids + test.ids
    assert len(ids) == len(set(ids))
    for split in (train, test):
        assert len(split.items) == len(split.ids) == len(split.labels)
        assert split.labels.dtype == np.uint8
        assert split.labels.shape[1] == len(dataset.label_names)
        assert np.all(split.labels.sum(axis=1) == 1)
    # a seeded 80/20 split
    assert len(test.ids) / len(ids) == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("factory", [demo_text, demo_images])
def test_the_corpora_are_deterministic(factory):
    a, b = factory(), factory()
    assert a.train.ids == b.train.ids and a.test.ids == b.test.ids
    if a.modality == "text":
        assert a.train.items == b.train.items
    else:
        np.testing.assert_array_equal(a.train.items, b.train.items)


def test_images_are_sklearn_digits_scaled_to_uint8(images):
    assert images.modality == "image"
    assert images.label_names == [str(d) for d in range(10)]
    digits = load_digits()
    for split in all_rows(images):
        assert split.items.dtype == np.uint8 and split.items.shape[1:] == (8, 8)
        rows = np.array([int(i.split("-")[1]) for i in split.ids])
        np.testing.assert_array_equal(split.items, np.rint(digits.images[rows] * 255 / 16))
        np.testing.assert_array_equal(split.labels.argmax(axis=1), digits.target[rows])
    assert len(images.train) + len(images.test) == len(digits.images)
    assert images.train.items.max() == 255


def test_text_is_a_few_thousand_distinct_short_documents(text):
    assert text.modality == "text"
    docs = text.train.items + text.test.items
    assert 2000 <= len(docs) <= 6000
    assert len(set(docs)) == len(docs)
    assert all(isinstance(d, str) and len(d.split()) >= MIN_WORDS for d in docs)
    assert max(len(d) for d in docs) <= MAX_CHARS
    # every topic is represented well enough to train and to query
    per_label = text.train.labels.sum(axis=0)
    assert set(TEXT_TOPICS) < set(text.label_names)
    assert per_label.min() >= 50, dict(zip(text.label_names, per_label, strict=True))


def test_text_topics_are_learnable(text):
    # non-trivial text: tf-idf nearest neighbours agree with the topic far above chance
    vectoriser = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    db = vectoriser.fit_transform(text.train.items)
    queries = vectoriser.transform(text.test.items)
    top = np.argsort(-(queries @ db.T).toarray(), axis=1)[:, :10]
    same = text.test.labels.argmax(1)[:, None] == text.train.labels.argmax(1)[top]
    share = text.train.labels.mean(axis=0)
    chance = float((share**2).sum())
    assert same.mean() > 2.5 * chance


def test_no_files_outside_the_installation_are_needed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    assert len(demo_text().train) > 0 and len(demo_images().train) > 0
