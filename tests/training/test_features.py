import numpy as np
import pytest
import scipy.sparse as sp

from training.features import (
    CountVectorFeaturizer,
    ImageFeaturizer,
    TextFeaturizer,
    VectorFeaturizer,
    featurizer_from_state,
    fit_featurizer,
    is_count_valued,
    looks_like_word_counts,
    text_tokens,
)
from training.image_features import gradient_histograms, gradient_width
from training.rejection import ItemRejected

TRAIN_TEXTS = [
    "the rocket launch was delayed by the weather",
    "nasa plans another rocket launch next week",
    "the hockey team won the game in overtime",
    "a great hockey game and the team played well",
    "orbit and launch windows for the rocket",
    "the goalie saved the game for the team",
]


def test_text_vocabulary_is_learned_on_train_only_without_stop_words() -> None:
    f = TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=50, min_df=1, max_df=1.0)
    assert "rocket" in f.vocabulary and "hockey" in f.vocabulary
    assert not {"the", "and", "for", "by"} & set(f.vocabulary)
    x = f.transform(["zebra quantum"])  # unseen words: nothing to count
    assert x.nnz == 0


def test_text_inputs_are_normalised_tfidf_and_targets_are_counts() -> None:
    f = TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=50, min_df=1, max_df=1.0)
    x = f.transform(TRAIN_TEXTS)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    t = f.targets(["rocket rocket launch"])
    assert t[0, f.vocabulary.index("rocket")] == 2 and t.sum() == 3
    np.testing.assert_allclose(f.inputs_from_targets(f.targets(TRAIN_TEXTS)).toarray(), x.toarray())


def test_text_counts_are_scikit_learns_count_vectors_exactly() -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    f = TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=50, min_df=1, max_df=1.0)
    texts = [
        *TRAIN_TEXTS,
        "",  # no term at all
        "zebra quantum",  # no term the vocabulary knows
        "ROCKET Rocket rocket launch, launch!",  # case folded, repeats counted
        "Ünïcode rocket\tlaunch\nhockey-game a b c",
    ]
    reference = CountVectorizer(
        vocabulary={w: i for i, w in enumerate(f.vocabulary)}, token_pattern=f.token_pattern
    ).transform(texts)
    counts = f.counts(texts)
    assert counts.dtype == np.float32 and counts.has_sorted_indices
    assert counts.shape == reference.shape
    np.testing.assert_array_equal(counts.indptr, reference.indptr)
    np.testing.assert_array_equal(counts.indices, reference.indices)
    np.testing.assert_array_equal(counts.data, reference.data)
    assert counts[len(TRAIN_TEXTS) + 2, f.vocabulary.index("rocket")] == 3


def test_text_vocab_size_caps_the_vocabulary() -> None:
    assert TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=5, min_df=1, max_df=1.0).dim == 5


def test_email_addresses_are_single_terms() -> None:
    texts = [
        "From: ann@cs.example.edu about the rocket launch",
        "Re: rocket launch, ann@cs.example.edu writes",
        "bob+news@mail.example.org on the hockey game",
        "hockey game report by bob+news@mail.example.org",
    ]
    f = TextFeaturizer.fit(texts, vocab_size=None, min_df=1, max_df=1.0)
    assert {"ann@cs.example.edu", "bob+news@mail.example.org"} <= set(f.vocabulary)
    assert not {"ann", "cs", "bob"} & set(f.vocabulary)  # not split into its parts
    assert f.targets(["mail ann@cs.example.edu now"])[0, f.vocabulary.index("ann@cs.example.edu")]


ADDRESS_CASES = [
    "a@b.c",
    "x a@b.c y",
    "foo.bar@baz.qux.com, hi",
    "@@",
    "@",
    "a@",
    "@b.c",
    "ab.cd@",
    "john.doe@ex-ample.co.uk>",
    "<a@b.c><d@e.f>",
    "m.e@x.y@z.w",
    "Ünïcode é@ü.de word",
    "a_b@c_d.e_f",
    "+x@y.z",
    "-a@b.c-",
    "x..y@z..w",
    "1@2.3 45",
    "a@b.c\nd@e.f",
    "ab@cd.ef.gh@ij",
]


def test_text_tokens_count_what_scikit_learn_counts() -> None:
    """The fast tokeniser against scikit-learn's analyzer for the same pattern: the same tokens
    (counted) on addresses next to every kind of character, and on seeded random strings."""
    import random
    from collections import Counter

    from sklearn.feature_extraction.text import CountVectorizer

    from training.features import TOKEN_PATTERN

    reference = CountVectorizer(token_pattern=TOKEN_PATTERN).build_analyzer()
    tokens = text_tokens(TOKEN_PATTERN)
    rng = random.Random(0)
    alphabet = [*"ab1_@.+-  \n,<>é", "ü", "\u00a0", "\u2028", "Ⅻ", "٣"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    for text in [*ADDRESS_CASES, *fuzz]:
        assert Counter(tokens(text)) == Counter(reference(text)), text
    assert Counter(tokens("Mail ANN@cs.example.edu, ann!")) == {"ann@cs.example.edu": 1,
                                                               "mail": 1, "ann": 1}  # fmt: skip
    other = r"(?u)\b\w+\b"  # a model saved with another pattern is tokenised by scikit-learn
    assert text_tokens(other)("a b@c.d") == ["a", "b", "c", "d"]


def test_ascii_counts_are_scikit_learns_on_random_text_with_every_token_a_term() -> None:
    """The word table's path for ASCII text (addresses split off first): scikit-learn's counts
    when every token of the corpus is a vocabulary term, on the address cases, seeded random
    ASCII strings and words longer than the table's first word buffer."""
    import random

    from sklearn.feature_extraction.text import CountVectorizer

    from training.features import TOKEN_PATTERN

    analyzer = CountVectorizer(token_pattern=TOKEN_PATTERN).build_analyzer()
    rng = random.Random(1)
    alphabet = [*"aB1_@.+-  \n\t,<>!'\x00"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    letters = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_"
    many = [  # thousands of distinct terms: a table with many collisions and long probes
        " ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 8))) for _ in range(9))
        for _ in range(3000)
    ]
    long_words = ["x" * 70 + " " + "Y" * 130 + "z", "a" * 64 + "@b.c " + "q" * 65]
    cases = [text for text in ADDRESS_CASES if text.isascii()]
    texts = [*cases, *fuzz, *many, *long_words, "Mail ANN@cs.example.edu, ann!"]
    vocabulary = sorted({token for text in texts for token in analyzer(text)})
    vocabulary.remove("bb")  # and a word the vocabulary lacks
    f = TextFeaturizer(vocabulary, np.ones(len(vocabulary), np.float32))
    reference = CountVectorizer(
        vocabulary={w: i for i, w in enumerate(vocabulary)}, token_pattern=TOKEN_PATTERN
    ).transform(texts)
    counts = f.counts(texts)
    assert counts.has_sorted_indices and counts.nnz > 30000 and len(vocabulary) > 20000
    np.testing.assert_array_equal(counts.indptr, reference.indptr)
    np.testing.assert_array_equal(counts.indices, reference.indices)
    np.testing.assert_array_equal(counts.data, reference.data)


def test_a_saved_text_featurizer_keeps_its_tokenisation() -> None:
    f = TextFeaturizer.fit(["ann@cs.example.edu wrote", "ann cs wrote"], vocab_size=None, min_df=1,
                           max_df=1.0)  # fmt: skip
    meta, arrays = f.to_state()
    assert featurizer_from_state(meta, arrays).counts(["ann@cs.example.edu"]).sum() == 1
    without = {k: v for k, v in meta.items() if k != "token_pattern"}
    with pytest.raises(KeyError, match="token_pattern"):  # load_model reports it as corrupt
        featurizer_from_state(without, arrays)


def test_text_rejects_non_strings() -> None:
    f = TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=50, min_df=1, max_df=1.0)
    with pytest.raises(ValueError, match="text item 1 is int"):
        f.transform(["ok", 3])
    with pytest.raises(ValueError, match="list of strings"):
        f.transform("just one string")


def test_images_are_scaled_and_flattened() -> None:
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    f = fit_featurizer("image", imgs)
    assert isinstance(f, ImageFeaturizer) and f.dim == 12 and f.likelihood == "bernoulli"
    x = f.transform(imgs)
    assert x.shape == (2, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, imgs.reshape(2, -1), rtol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(n, 3, 4\)"):
        f.transform(np.zeros((1, 4, 4), np.uint8))


def test_images_can_carry_their_gradient_histograms_beside_the_pixels() -> None:
    rng = np.random.default_rng(0)
    imgs = (rng.random((3, 12, 16)) * 255).astype(np.uint8)
    f = fit_featurizer("image", imgs, image_gradients=True)
    assert isinstance(f, ImageFeaturizer) and f.gradients
    hog_width = gradient_width((12, 16))  # 3 x 4 cells, 2 x 3 blocks of 4 cells x 9 bins
    assert hog_width == 2 * 3 * 4 * 9 and f.dim == 12 * 16 + hog_width
    x = f.transform(imgs)
    assert x.shape == (3, f.dim) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(f.pixels(x) * 255, imgs.reshape(3, -1), rtol=1e-5)
    np.testing.assert_allclose(f.gradient_rows(x), gradient_histograms(f.pixels(x), (12, 16)))
    recon = f.from_reconstruction(x, imgs)  # the decoder's pixels, without the histograms
    assert recon.shape == (3, 12, 16)
    np.testing.assert_allclose(recon * 255, imgs, rtol=1e-5)
    meta, arrays = f.to_state()
    again = featurizer_from_state(meta, arrays)
    np.testing.assert_array_equal(again.transform(imgs), x)
    # models saved before gradient inputs existed read pixels only
    old = featurizer_from_state({"kind": "image", "shape": [12, 16]}, {})
    assert isinstance(old, ImageFeaturizer) and not old.gradients and old.dim == 12 * 16
    # images too small for the histograms' cells read pixels only
    tiny = fit_featurizer("image", imgs[:, :6, :6], image_gradients=True)
    assert not tiny.gradients and tiny.dim == 36


def test_count_vectors_use_the_multinomial_decoder() -> None:
    counts = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [1, 1, 1]], dtype=np.float32))
    assert is_count_valued(counts)
    f = fit_featurizer("vector", counts)
    assert isinstance(f, CountVectorFeaturizer) and f.likelihood == "multinomial"
    assert f.dim == 3 and fit_featurizer("vector", counts, vocab_size=2).dim == 2
    assert f.targets(counts).sum() == counts.sum()
    x = f.transform(counts)
    np.testing.assert_allclose(np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel()), 1.0, rtol=1e-5)


def test_real_vectors_are_standardised_with_train_statistics() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, size=(500, 4)).astype(np.float32)
    train[:, 3] = 1.0  # a constant feature must not divide by zero
    assert not is_count_valued(train)
    f = fit_featurizer("vector", train)
    assert isinstance(f, VectorFeaturizer) and f.likelihood == "gaussian"
    x = f.transform(train)
    np.testing.assert_allclose(x[:, :3].mean(0), 0.0, atol=1e-4)
    spread = x[:, :3].std(0)  # unit spread, except a feature narrower than the median one
    np.testing.assert_allclose(np.sort(spread)[1:], 1.0, atol=1e-3)
    assert spread.min() > 0.8 and np.all(spread < 1 + 1e-3)
    assert np.all(x[:, 3] == 0)
    with pytest.raises(ValueError, match="4 columns"):
        f.transform(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        f.transform(np.full((2, 4), np.nan, np.float32))


def test_a_vector_that_overflows_when_standardised_is_refused_by_its_index() -> None:
    # 1e37 is a finite float32, but over a 0.01 spread it is inf: the network would give NaN
    f = VectorFeaturizer(np.zeros(4, np.float32), np.full(4, 0.01, np.float32))
    far = np.array([[0.5] * 4, [1e37, -1e37, 0.0, 0.0]], np.float32)
    with pytest.raises(ItemRejected, match="item 1: .*far from the training data") as caught:
        f.transform(far)
    assert caught.value.index == 1
    assert np.isfinite(f.transform(far[:1])).all()


@pytest.mark.parametrize("bad", [-5.0, np.nan, np.inf])
@pytest.mark.parametrize("sparse", [False, True])
def test_word_counts_must_be_finite_and_non_negative(bad: float, sparse: bool) -> None:
    counts = np.array([[1, 0, 2], [0, 3, 0], [1, 1, 1]], dtype=np.float32)
    f = CountVectorFeaturizer.fit(counts)
    items = counts.copy()
    items[2, 1] = bad  # log1p(-5) is NaN: the term would silently drop out of the tf-idf
    with pytest.raises(ItemRejected, match="item 2: ") as caught:
        f.transform(sp.csr_matrix(items) if sparse else items)
    assert caught.value.index == 2
    with pytest.raises(ItemRejected, match="item 2: "):
        CountVectorFeaturizer.fit(sp.csr_matrix(items) if sparse else items)


def test_nearly_constant_features_are_not_blown_up() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0.0, 1.0, size=(1000, 5)).astype(np.float32)
    train[:, 4] = 0.0
    train[:3, 4] = 1.0  # a rare flag: std 0.05 against 1 for the others
    f = fit_featurizer("vector", train)
    x = f.transform(train)
    np.testing.assert_allclose(x[:, :4].std(0), 1.0, atol=0.05)  # wide features: standardised
    assert np.abs(x[:, 4]).max() < 1.5  # divided by the median spread (~1), not by 0.05


def test_dense_integer_data_is_word_counts_only_when_mostly_zero() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 17, size=(200, 64)).astype(np.float32)  # 94% non-zero
    assert is_count_valued(pixels) and not looks_like_word_counts(pixels)
    assert isinstance(fit_featurizer("vector", pixels), VectorFeaturizer)
    words = rng.poisson(0.05, size=(200, 300)).astype(np.float32)  # 5% non-zero
    assert looks_like_word_counts(words)
    assert isinstance(fit_featurizer("vector", words), CountVectorFeaturizer)
    assert looks_like_word_counts(sp.csr_matrix(pixels))  # sparse storage says bag of words
    # the likelihood setting decides over the guess, both ways
    assert isinstance(fit_featurizer("vector", words, likelihood="gaussian"), VectorFeaturizer)
    forced = fit_featurizer("vector", pixels, likelihood="multinomial")
    assert isinstance(forced, CountVectorFeaturizer)
    with pytest.raises(ValueError, match="multinomial.*non-negative integers"):
        fit_featurizer("vector", pixels + 0.5, likelihood="multinomial")


@pytest.mark.parametrize(
    "make",
    [
        lambda: TextFeaturizer.fit(TRAIN_TEXTS, vocab_size=50, min_df=1, max_df=1.0),
        lambda: fit_featurizer("image", np.zeros((2, 5, 5), np.uint8)),
        lambda: fit_featurizer("vector", np.random.default_rng(0).normal(size=(10, 3))),
        lambda: fit_featurizer("vector", sp.csr_matrix(np.eye(3, dtype=np.float32))),
    ],
)
def test_state_round_trip(make) -> None:
    f = make()
    meta, arrays = f.to_state()
    g = featurizer_from_state(meta, arrays)
    items = (
        TRAIN_TEXTS
        if f.kind == "text"
        else (np.zeros((2, 5, 5), np.uint8) if f.kind == "image" else np.eye(3, dtype=np.float32))
    )
    a, b = f.transform(items), g.transform(items)
    a = a.toarray() if sp.issparse(a) else a
    b = b.toarray() if sp.issparse(b) else b
    np.testing.assert_array_equal(a, b)


def test_unknown_modality() -> None:
    with pytest.raises(ValueError, match="unknown modality"):
        fit_featurizer("audio", [])


def test_count_vectors_keep_the_most_frequent_columns() -> None:
    counts = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=np.float32))
    f = CountVectorFeaturizer.fit(counts, vocab_size=2)
    assert f.columns.tolist() == [0, 2]  # document frequencies 2, 0, 3, 1
    np.testing.assert_array_equal(f.targets(counts).toarray(), counts.toarray()[:, [0, 2]])
    with pytest.raises(ValueError, match="4 columns"):
        f.transform(sp.csr_matrix(np.ones((1, 3), np.float32)))


def test_bm25_saturates_counts_and_discounts_long_documents() -> None:
    import scipy.sparse as sp

    from training.features import bm25_rows

    counts = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [4, 1, 0, 0], [1, 1, 6, 6], [0, 0, 1, 1]], dtype=np.float32)
    )
    w = bm25_rows(counts).toarray()
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)
    # a count 4x larger gives a weight well under 4x (before normalisation, ratio = w0/w1)
    ratio_short = (w[1, 0] / w[1, 1]) / (w[0, 0] / w[0, 1])
    assert 1.5 < ratio_short < 2.5
    # terms present in fewer documents weigh more (idf): term 2 is in 2 of 4, term 0 in 3 of 4
    assert w[3, 2] > 0 and w[2, 2] / w[2, 0] > 1.0
    raw = bm25_rows(counts[:2]).toarray()  # idf and lengths come from the rows given
    assert not np.allclose(raw, w[:2])
