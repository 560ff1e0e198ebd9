"""The translation recipe: config, network, masking, decoding, data sources."""

import collections
import dataclasses
import math
import os
import types

import keras
import numpy as np
import pytest

from keras_swish import SwishBeta
from keras_swish.cli import main
from keras_swish.recipes.core import runner
from keras_swish.recipes.core.config import ConfigError, parse_set
from keras_swish.recipes.core.registry import get_recipe
from keras_swish.recipes.data import text as text_data
from keras_swish.recipes.data.text import BOS_ID, EOS_ID
from keras_swish.recipes.models.activations import ACTIVATIONS
from keras_swish.recipes.models.transformer import (
    SmoothedSparseCrossentropy,
    TransformerSchedule,
    build_transformer,
    feedforward_activations,
)
from keras_swish.recipes.tasks.decoding import (
    CachedDecoder,
    beam_search,
    corpus_bleu,
    greedy_decode,
    length_penalty,
)
from keras_swish.recipes.tasks.translation import TransformerConfig
from tests.backend_utils import to_numpy
from tests.recipes.run_checks import record_disk_events

RECIPE = get_recipe("transformer_nmt")
KIND = {
    "relu": keras.layers.ReLU,
    "relu6": keras.layers.ReLU,
    "leaky_relu": keras.layers.LeakyReLU,
    "prelu": keras.layers.PReLU,
    "swish_beta": SwishBeta,
}


def tiny(**changes):
    base = dict(
        d_model=16, num_heads=2, ffn_dim=24, encoder_layers=2, decoder_layers=3, dropout=0.0
    )
    return dataclasses.replace(TransformerConfig(), **dict(base, **changes))


# --- Config ---------------------------------------------------------------------


def test_reference_defaults_are_transformer_base():
    config = RECIPE.default_config()
    m, d, o, t = config.model, config.data, config.optimizer, config.train
    assert (m.d_model, m.num_heads, m.ffn_dim, m.encoder_layers, m.decoder_layers) == (
        512,
        8,
        2048,
        6,
        6,
    )
    assert (m.dropout, m.beam_size, m.length_penalty, t.label_smoothing) == (0.1, 4, 0.6, 0.1)
    assert m.attention_dropout == 0.0  # Vaswani et al. 5.4: residuals and embeddings only
    assert (o.beta_1, o.beta_2, o.epsilon, o.warmup_steps, o.scale) == (0.9, 0.98, 1e-9, 4000, 1.0)
    assert (d.vocab_size, d.tokens_per_batch) == (32000, 25000)
    assert t.epochs * t.steps_per_epoch == 300_000  # the paper's steps
    assert RECIPE.task == "translation" and not hasattr(RECIPE, "presets")
    recipe, experiment, wmt = runner.resolve(
        "transformer_nmt", flags={"data": "tfds:wmt14_translate/de-en"}
    )
    assert recipe is RECIPE and experiment.name == "transformer_nmt/wmt14"
    assert wmt.model == TransformerConfig() and wmt.data.vocab_size == 32000
    assert wmt.train.output == "runs/transformer_nmt-wmt14-swish_beta"
    # The experiment by name reads WMT14 without --data.
    _, _, named = runner.resolve("transformer_nmt/wmt14")
    assert named == wmt and named.data.source == "tfds:wmt14_translate/de-en"
    _, experiment, own = runner.resolve("transformer_nmt", flags={"data": "text:a.en,b.de"})
    assert experiment.name == "transformer_nmt/text" and own.model == TransformerConfig()


def test_data_without_an_experiment_is_refused():
    with pytest.raises(ConfigError, match="has no experiment for --data folder:x"):
        runner.resolve("transformer_nmt", flags={"data": "folder:x"})
    with pytest.raises(ConfigError, match="has no settings for --data text:a.en,b.de"):
        runner.resolve("transformer_nmt/wmt14", flags={"data": "text:a.en,b.de"})
    assert issubclass(ConfigError, ValueError)


def test_embedded_experiment_and_recipe_flags():
    _, experiment, config = runner.resolve("transformer_nmt")
    assert experiment.name == "transformer_nmt/embedded" and experiment.default
    assert config.data.source is None
    assert (config.model.d_model, config.model.encoder_layers, config.data.vocab_size) == (
        128,
        2,
        1000,
    )
    assert config.train.output == "runs/transformer_nmt-embedded-swish_beta"
    flags = {
        "vocab_size": 500,
        "tokens_per_batch": 800,
        "max_length": 40,
        "beam_size": 2,
        "length_penalty": 1.0,
        "activation": "relu",
        "epochs": 3,
    }
    _, _, config = runner.resolve(
        "transformer_nmt", flags=flags, overrides=parse_set(["model.dropout=0.2"])
    )
    assert config.train.output == "runs/transformer_nmt-embedded-relu"
    assert config.model.activation == "relu" and config.train.epochs == 3
    assert (config.data.vocab_size, config.data.tokens_per_batch, config.data.max_length) == (
        500,
        800,
        40,
    )
    assert (config.model.beam_size, config.model.length_penalty, config.model.dropout) == (
        2,
        1.0,
        0.2,
    )
    assert "image_size" not in RECIPE.flags and set(RECIPE.extra_flags) <= set(RECIPE.flags)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"activation": "swish_bta"}, "Unknown activation 'swish_bta'"),
        ({"data": "text:only-one-file"}, "Cannot read --data 'text:only-one-file'"),
        ({"beam_size": 0}, "'model.beam_size' must be at least 1"),
        ({"length_penalty": -1.0}, "'model.length_penalty' must be >= 0"),
        ({"tokens_per_batch": 10}, "'data.tokens_per_batch' must be at least data.max_length"),
        ({"vocab_size": 4}, "'data.vocab_size' must be at least 16"),
        ({"max_length": 2}, "'data.max_length' must be at least 4"),
    ],
)
def test_bad_config_values(flags, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runner.resolve("transformer_nmt", flags=flags)


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match="'model.d_model' must be a multiple of model.num_heads"):
        runner.resolve("transformer_nmt", overrides={"model": {"num_heads": 5}})


# --- The network ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_reaches_every_ffn(name, tmp_path):
    model = build_transformer(tiny(activation=name), vocab_size=40, max_length=16)
    acts = feedforward_activations(model)
    assert len(acts) == 2 + 3  # every encoder and decoder layer
    assert len({id(a) for a in acts}) == len(acts), "each FFN owns its activation"
    assert all(isinstance(a, KIND.get(name, keras.layers.Activation)) for a in acts)
    if name in ("prelu", "swish_beta"):
        weights = [w for a in acts for w in a.trainable_weights]
        assert len(weights) == 5 and all(int(np.prod(w.shape)) == 24 for w in weights)
    # The activation survives saving, e.g. relu6's cap and leaky_relu's 0.01.
    model.save(tmp_path / "m.keras")
    restored = feedforward_activations(keras.models.load_model(tmp_path / "m.keras"))
    assert [type(a) for a in restored] == [type(a) for a in acts]
    x = np.linspace(-300.0, 10.0, 2 * 24, dtype="float32").reshape(1, 2, 24)
    for before, after in zip(acts, restored, strict=True):
        np.testing.assert_allclose(to_numpy(after(x)), to_numpy(before(x)), rtol=1e-6)


def test_transformer_base_size():
    relu = build_transformer(TransformerConfig(activation="relu"), vocab_size=32000, max_length=256)
    # Shared 32000 × 512 embedding (also the output layer), 6 encoder and 6 decoder layers.
    assert relu.count_params() == 16_384_000 + 6 * 3_152_384 + 6 * 4_204_032
    assert len(feedforward_activations(relu)) == 12
    tied = [w for w in relu.weights if "embeddings" in w.path]
    assert len(tied) == 1 and tuple(tied[0].shape) == (32000, 512)


def _blocks_and_attentions(model):
    """The keras-hub Transformer blocks of `model` and their MultiHeadAttention layers."""
    import keras_hub

    from keras_swish.recipes.models.transformer import attention_layers

    kinds = (keras_hub.layers.TransformerEncoder, keras_hub.layers.TransformerDecoder)
    blocks = [layer for layer in model.layers if isinstance(layer, kinds)]
    return blocks, [a for block in blocks for a in attention_layers(block)]


@pytest.mark.parametrize("attention_dropout", [0.0, 0.5])
def test_attention_dropout_is_its_own_rate_beside_the_residual_dropout(attention_dropout):
    # keras-hub's layers use their one `dropout` on the attention probabilities
    # too; the recipe sets those to `attention_dropout` (Vaswani: none). This
    # also guards `set_attention_dropout` against a Keras that renames what it sets.
    model = build_transformer(
        tiny(dropout=0.5, attention_dropout=attention_dropout), vocab_size=30, max_length=32
    )
    blocks, attentions = _blocks_and_attentions(model)
    assert len(attentions) == 2 + 3 * 2  # encoder self; decoder self and cross
    x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")
    for attention in attentions:
        first, second = (to_numpy(attention(x, x, training=True)) for _ in range(2))
        assert np.array_equal(first, second) == (attention_dropout == 0.0)
        np.testing.assert_array_equal(  # inference: never dropped
            to_numpy(attention(x, x, training=False)), to_numpy(attention(x, x))
        )
    # The residual dropout of every block is still the model's `dropout`.
    encoder = blocks[0]
    first, second = (to_numpy(encoder(x, training=True)) for _ in range(2))
    assert not np.array_equal(first, second)
    assert {block.dropout for block in blocks} == {0.5}


def test_a_loaded_model_gets_its_attention_dropout_back(tmp_path):
    # A .keras file keeps keras-hub's config (one `dropout`): loaded, the
    # attention probabilities drop out at the residual rate until it is set again.
    from keras_swish.recipes.models.transformer import set_transformer_attention_dropout

    config = tiny(dropout=0.5, attention_dropout=0.0)
    path = str(tmp_path / "model.keras")
    build_transformer(config, vocab_size=30, max_length=32).save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")

    def dropped(model):
        _, attentions = _blocks_and_attentions(model)
        assert len(attentions) == 2 + 3 * 2
        return [
            not np.array_equal(*(to_numpy(a(x, x, training=True)) for _ in range(2)))
            for a in attentions
        ]

    assert all(dropped(loaded))
    assert set_transformer_attention_dropout(loaded, config.attention_dropout) == 8
    assert not any(dropped(loaded))
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\). Received: rate=1"):
        set_transformer_attention_dropout(loaded, 1)


def test_padding_changes_nothing():
    model = build_transformer(tiny(dropout=0.1), vocab_size=30, max_length=32)
    rng = np.random.default_rng(0)
    source = rng.integers(4, 30, (2, 5)).astype("int32")
    target = rng.integers(4, 30, (2, 4)).astype("int32")
    logits = to_numpy(model({"source": source, "target_in": target}, training=False))
    padded = to_numpy(
        model(
            {
                "source": np.pad(source, ((0, 0), (0, 6))),
                "target_in": np.pad(target, ((0, 0), (0, 3))),
            },
            training=False,
        )
    )
    np.testing.assert_allclose(padded[:, :4], logits, rtol=1e-5, atol=1e-5)

    loss = SmoothedSparseCrossentropy(label_smoothing=0.1)
    labels = rng.integers(4, 30, (2, 4)).astype("int32")
    weights = np.ones((2, 4), "float32")
    value = float(loss(labels, logits, sample_weight=weights))
    padded_labels = np.pad(labels, ((0, 0), (0, 3)))
    padded_value = float(
        loss(padded_labels, padded, sample_weight=(padded_labels != 0).astype("float32"))
    )
    assert padded_value == pytest.approx(value, rel=1e-5)
    # The same number as Keras's one-hot cross-entropy with label smoothing.
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    assert value == pytest.approx(float(reference(keras.ops.one_hot(labels, 30), logits)), rel=1e-5)

    metric = keras.metrics.SparseCategoricalAccuracy()
    metric.update_state(labels, logits)
    accuracy = float(metric.result())
    metric.reset_state()
    metric.update_state(padded_labels, padded, sample_weight=(padded_labels != 0))
    assert float(metric.result()) == pytest.approx(accuracy)


def test_transformer_schedule():
    schedule = TransformerSchedule(d_model=512, warmup_steps=4000)
    # `step` is the optimizer's iteration count; the formula counts from 1.
    assert float(schedule(0)) == pytest.approx(512**-0.5 * 1 * 4000**-1.5)
    assert float(schedule(3999)) == pytest.approx(512**-0.5 * 4000**-0.5, rel=1e-5)  # the peak
    assert float(schedule(15999)) == pytest.approx(512**-0.5 * 16000**-0.5, rel=1e-5)
    restored = TransformerSchedule.from_config(schedule.get_config())
    assert float(restored(99)) == pytest.approx(float(schedule(99)))


# --- Decoding ----------------------------------------------------------------------


def test_beam_one_equals_greedy():
    keras.utils.set_random_seed(3)
    model = build_transformer(tiny(d_model=32, num_heads=4), vocab_size=40, max_length=64)
    rng = np.random.default_rng(1)
    source = rng.integers(4, 40, (6, 9)).astype("int32")
    source[:, -1] = EOS_ID
    source[2, 4:], source[2, 3] = 0, EOS_ID  # a shorter, padded sentence
    # An untrained model never ends a sentence: make EOS outscore its most
    # frequent output token, so that some translations end early.
    tokens = [t for sentence in greedy_decode(model, source, 64, 12) for t in sentence]
    embeddings = model.get_layer("embedding").token_embedding.embeddings
    table = to_numpy(embeddings).copy()
    table[EOS_ID] = 1.5 * table[collections.Counter(tokens).most_common(1)[0][0]]
    embeddings.assign(table)

    greedy = greedy_decode(model, source, max_length=64, extra_length=12)
    beam = beam_search(CachedDecoder(model), source, beam_size=1, max_length=64, extra_length=12)
    assert beam == greedy
    lengths = sorted(len(g) for g in greedy)
    assert lengths[0] < 9 + 12 - 1, f"no sentence ended early: {lengths}"
    wide = beam_search(CachedDecoder(model), source, beam_size=4, max_length=64, extra_length=12)
    assert len(wide) == 6 and all(EOS_ID not in w and BOS_ID not in w for w in wide)


class TableDecoder:
    """A fake decoder with fixed next-token probabilities per prefix."""

    A, B = 4, 5
    TABLE = {
        (): {A: 0.55, B: 0.45},
        (A,): {A: 0.34, B: 0.33, EOS_ID: 0.33},
        (B,): {EOS_ID: 0.9, A: 0.1},
    }

    def start(self, source, rows_per_sentence, max_length):
        return {"prefixes": [() for _ in range(len(source) * rows_per_sentence)]}

    def step(self, state, tokens, index, order):
        prefixes = [state["prefixes"][i] for i in order]
        if index > 0:
            prefixes = [p + (int(t),) for p, t in zip(prefixes, tokens, strict=True)]
        state["prefixes"] = prefixes
        out = np.full((len(prefixes), 6), -1e9)
        for row, prefix in enumerate(prefixes):
            probs = self.TABLE.get(prefix, {EOS_ID: 0.6, self.A: 0.4})
            for token, p in probs.items():
                out[row, token] = np.log(p)
        return out


def test_beam_search_finds_what_greedy_misses():
    source = np.array([[9, EOS_ID]])
    greedy = beam_search(TableDecoder(), source, beam_size=1, alpha=0.0, max_length=6)
    assert greedy == [[TableDecoder.A, TableDecoder.A]]  # 0.55, then 0.34 > 0.33, then EOS
    beam = beam_search(TableDecoder(), source, beam_size=2, alpha=0.0, max_length=6)
    assert beam == [[TableDecoder.B]]  # P = 0.45 · 0.9 beats 0.55 · 0.33 and 0.55 · 0.34 · 0.6
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 0.6) == pytest.approx(2**0.6)


def test_corpus_bleu_13a_and_intl_tokenizers():
    sacrebleu = pytest.importorskip("sacrebleu")
    # Hyphens and German quotes glued to words: 13a keeps them on the word
    # (ASCII "-" and „“ are not in its split set), intl splits them off.
    hypotheses = ["Die E-Mail-Adresse ist „ungültig“.", "Passwort ändern?"]
    references = ["Die E-Mail Adresse ist ungültig!", "Passwort ändern."]
    scores = {}
    for tokenize in ("13a", "intl"):
        score, signature = corpus_bleu(hypotheses, references, tokenize=tokenize)
        direct = sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize)
        assert score == pytest.approx(direct.score, abs=1e-9)
        assert f"tok:{tokenize}|" in signature and signature.startswith("nrefs:1|case:mixed")
        scores[tokenize] = score
    assert corpus_bleu(hypotheses, references)[0] == scores["13a"]  # the default
    # intl matches "E", "-", "Mail", "ungültig" that 13a sees as unmatched words.
    assert scores["intl"] > scores["13a"] + 5, scores
    perfect, _ = corpus_bleu(references, references, tokenize="intl")
    assert perfect == pytest.approx(100.0)


# --- Data ----------------------------------------------------------------------------

PO_TEXT = r"""
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#: a.py:1
msgid "Save"
msgstr "Speichern"

msgid ""
"Please correct the "
"errors below."
msgstr ""
"Bitte die unten "
"aufgeführten Fehler korrigieren."

msgid "%(count)d item"
msgid_plural "%(count)d items"
msgstr[0] "%(count)d Element"
msgstr[1] "%(count)d Elemente"

#, fuzzy
msgid "Delete"
msgstr "Löschen?"

msgid "%(value)s"
msgstr "%(value)s"

msgid "<b>%s</b>"
msgstr "<b>%s</b>"

msgid "Not translated"
msgstr ""

msgctxt "month name"
msgid "May"
msgstr "Mai"
"""


def test_a_new_vocabulary_is_on_the_disk_before_it_is_in_place(tmp_path, monkeypatch):
    # A run's config.yaml follows it and makes every resume trust the file: a
    # lost machine must not leave an empty sentencepiece.model behind a rename.
    events = record_disk_events(monkeypatch)
    model = tmp_path / "run" / "sentencepiece.model"
    words = ["Haus", "Baum", "Katze", "Hund", "klein", "groß", "rot", "grün"]
    sentences = [" ".join(words[i:] + words[:i]) for i in range(8)] * 20
    text_data.train_sentencepiece(sentences, str(model), vocab_size=40)
    run = os.path.realpath(tmp_path / "run")
    placed = events.index(("replace", f"{run}/sentencepiece.model"))
    vocab = events.index(("replace", f"{run}/sentencepiece.vocab"))
    assert vocab < placed
    for name, index in (("sentencepiece.vocab", vocab), ("sentencepiece.model", placed)):
        synced = [path for kind, path in events[:index] if kind == "fsync"]
        assert any(os.path.basename(path).endswith(name) for path in synced), (name, events)
    assert ("fsync", run) in events[placed + 1 :]
    assert text_data.load_sentencepiece(str(model)).vocab_size() <= 40


def test_vocabularies_that_tokenize_alike_digest_alike_wherever_they_were_written(tmp_path):
    # Each multi-worker worker builds its own; the workers compare digests.
    words = ["Haus", "Baum", "Katze", "Hund", "klein", "groß", "rot", "grün"]
    sentences = [" ".join(words[i:] + words[:i]) for i in range(8)] * 20
    paths = [tmp_path / "a" / "sentencepiece.model", tmp_path / "worker-b" / "x.model"]
    for path in paths:
        text_data.train_sentencepiece(sentences, str(path), vocab_size=40)
    assert paths[0].read_bytes() != paths[1].read_bytes()  # the spec names its folder
    digests = {text_data.vocabulary_digest(str(path)) for path in paths}
    assert len(digests) == 1
    other = tmp_path / "other.model"
    text_data.train_sentencepiece(sentences, str(other), vocab_size=36)
    assert text_data.vocabulary_digest(str(other)) not in digests


def test_po_catalog_reader(tmp_path):
    path = tmp_path / "django.po"
    path.write_text(PO_TEXT, encoding="utf-8")
    assert text_data.catalog_pairs(str(path)) == [
        ("Save", "Speichern"),
        ("Please correct the errors below.", "Bitte die unten aufgeführten Fehler korrigieren."),
        ("%(count)d item", "%(count)d Element"),
        ("%(count)d items", "%(count)d Elemente"),
        ("May", "Mai"),
    ]


def test_embedded_pairs_are_real_and_split_deterministically():
    pairs = text_data.load_catalog_pairs()
    assert len(pairs) > 1800
    assert len({s for s, _ in pairs}) == len(pairs)
    assert ("Delete", "Löschen") in pairs
    assert all(text_data.has_words(s) and text_data.has_words(t) for s, t in pairs)
    data = runner.resolve("transformer_nmt")[2].data
    fractions = (data.validation_fraction, data.test_fraction)
    assert fractions == (0.1, 0.1)
    train, val, test = text_data.split_pairs(pairs, *fractions)
    assert text_data.split_pairs(list(reversed(pairs)), *fractions)[2] == list(reversed(test))
    assert len(train) + len(val) + len(test) == len(pairs)
    assert 0.07 < len(test) / len(pairs) < 0.13 and 0.07 < len(val) / len(pairs) < 0.13
    assert not {s for s, _ in test} & {s for s, _ in train}


def test_normalized_sources_never_cross_splits():
    assert text_data.normalize_source("  Save  the file… ") == "save the file"
    assert text_data.normalize_source("E-mail address:") == text_data.normalize_source(
        "e-mail Address"
    )
    pairs = text_data.load_catalog_pairs()
    # The corpus has near-duplicates ("Delete" / "Delete?"): the split must keep them together.
    groups = collections.Counter(text_data.normalize_source(s) for s, _ in pairs)
    assert sum(count > 1 for count in groups.values()) > 20
    data = runner.resolve("transformer_nmt")[2].data
    train, val, test = text_data.split_pairs(pairs, data.validation_fraction, data.test_fraction)
    seen = {text_data.normalize_source(s) for s, _ in train}
    for name, split in (("validation", val), ("test", test)):
        leaks = [s for s, _ in split if text_data.normalize_source(s) in seen]
        assert not leaks, f"{name} sources also in training after normalization: {leaks[:5]}"
    val_sources = {text_data.normalize_source(s) for s, _ in val}
    assert not val_sources & {text_data.normalize_source(s) for s, _ in test}


def _embedded_data(folder, seed):
    """The embedded experiment's config and data for `seed`, its run folder in `folder`."""
    flags = {"output": str(folder / "run"), "seed": seed}
    _, _, config = runner.resolve("transformer_nmt", flags=flags)
    return config, RECIPE.make_data(config)


@pytest.fixture
def embedded_data(tmp_path):
    # Per test: keras.backend.clear_session() between tests frees the tokenizer's resource.
    return _embedded_data(tmp_path / "seed0", seed=0)


def test_embedded_splits_do_not_depend_on_the_seed(embedded_data, tmp_path):
    config, data = embedded_data
    _, other = _embedded_data(tmp_path / "seed1", seed=1)
    assert other.validation_pairs == data.validation_pairs
    assert other.test_pairs == data.test_pairs
    assert other.train_examples == data.train_examples
    train, val, test = text_data.split_pairs(
        text_data.load_catalog_pairs(),
        config.data.validation_fraction,
        config.data.test_fraction,
    )
    assert data.validation_pairs == val and data.test_pairs == test
    assert data.train_examples == len(train)


def _same_batch(a, b):
    (inputs_a, labels_a, weights_a), (inputs_b, labels_b, weights_b) = a, b
    return all(
        np.array_equal(x, y)
        for x, y in (
            (inputs_a["source"], inputs_b["source"]),
            (inputs_a["target_in"], inputs_b["target_in"]),
            (labels_a, labels_b),
            (weights_a, weights_b),
        )
    )


def test_training_stream_resumed_at_epoch_k_reads_what_a_whole_run_reads(embedded_data):
    _, data = embedded_data
    steps, k = 3, 2
    whole = list(data.train(0, steps).take((k + 1) * steps).as_numpy_iterator())
    resumed = list(data.train(k, steps).take(steps).as_numpy_iterator())
    assert _same_batch(resumed[0], whole[k * steps])
    assert all(_same_batch(a, b) for a, b in zip(resumed, whole[k * steps :], strict=True))
    # An epoch's order depends on the seed and the epoch only.
    assert _same_batch(next(data.train(0, steps).as_numpy_iterator()), whole[0])
    assert _same_batch(next(data.train(1, steps).as_numpy_iterator()), whole[steps])


def test_each_epoch_has_its_own_order(embedded_data):
    _, data = embedded_data
    steps = 3
    firsts = [next(data.train(epoch, steps).as_numpy_iterator()) for epoch in range(3)]
    assert not any(_same_batch(firsts[i], firsts[j]) for i in range(3) for j in range(i))


@pytest.mark.parametrize(
    "text, spec",
    [
        (None, text_data.DataSpec("embedded", "catalogs")),
        ("tfds:wmt14_translate/de-en", text_data.DataSpec("tfds", "wmt14_translate/de-en")),
        (
            "tfds:wmt14_translate/de-en:train[:1%]",
            text_data.DataSpec("tfds", "wmt14_translate/de-en", "train[:1%]"),
        ),
        ("text:a.en,b.de", text_data.DataSpec("text", "a.en", target_file="b.de")),
    ],
)
def test_data_specs(text, spec):
    assert text_data.parse_data_spec(text) == spec


@pytest.mark.parametrize("text", ["text:a.en", "text:a,b,c", "text:,b", "folder:x", "tfds:"])
def test_bad_data_specs(text):
    with pytest.raises(text_data.DataError, match="Cannot read --data"):
        text_data.parse_data_spec(text)


def _data_config(**changes):
    base = dict(
        vocab_size=60,
        max_length=24,
        tokens_per_batch=96,
        shuffle_buffer=100,
        sentencepiece_sentences=0,
        length_sample=100,
    )
    config = RECIPE.default_config().data
    return dataclasses.replace(config, **dict(base, **changes))


def _check_batches(data, config):
    assert data.test is None  # translation test pairs are scored by BLEU only
    assert data.steps_per_pass >= 1 and not hasattr(data, "steps_per_epoch")
    for dataset in (data.train().take(8), data.validation):
        for inputs, labels, weights in dataset.as_numpy_iterator():
            source, target_in = inputs["source"], inputs["target_in"]
            assert source.shape[0] == labels.shape[0] == target_in.shape[0]
            assert max(source.shape[1], labels.shape[1]) * len(labels) <= config.tokens_per_batch
            np.testing.assert_array_equal(weights, labels != 0)  # padding weighs nothing
            np.testing.assert_array_equal(target_in[:, 0], BOS_ID)
            np.testing.assert_array_equal(target_in[:, 1:], labels[:, :-1])
            assert ((labels == EOS_ID).sum(axis=1) == 1).all()
    assert int(data.validation.cardinality()) > 0


def test_text_files(tmp_path):
    words = ["house", "tree", "cat", "dog", "small", "big", "red", "green"]
    german = ["Haus", "Baum", "Katze", "Hund", "klein", "groß", "rot", "grün"]
    rng = np.random.default_rng(0)
    src, tgt = [], []
    for _ in range(120):
        idx = rng.integers(0, 8, rng.integers(1, 6))
        src.append(" ".join(words[i] for i in idx))
        tgt.append(" ".join(german[i] for i in idx))
    (tmp_path / "a.en").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    spec = text_data.parse_data_spec(f"text:{tmp_path / 'a.en'},{tmp_path / 'a.de'}")
    config = _data_config()
    out = tmp_path / "run"
    data = text_data.make_translation_data(spec, config, str(out), batch_size=32, seed=0)
    assert (out / "sentencepiece.model").exists() and data.vocab_size <= 60
    assert data.train_examples + len(data.validation_pairs) + len(data.test_pairs) <= 120
    assert data.summary.startswith(f"text:{tmp_path / 'a.en'}")
    _check_batches(data, config)
    # No config.yaml yet: the vocabulary of a run that stopped before it started (a
    # kill mid-copy, bad input found later) may be truncated or for other settings.
    (out / "sentencepiece.model").write_bytes(b"truncated by a kill")
    data = text_data.make_translation_data(spec, config, str(out), batch_size=32, seed=0)
    assert text_data.load_sentencepiece(str(out / "sentencepiece.model")).vocab_size() > 8
    # The run's own (its config.yaml is written): reused as it is.
    (out / "config.yaml").write_text("recipe: transformer_nmt\n")
    before = (out / "sentencepiece.model").stat().st_mtime_ns
    text_data.make_translation_data(spec, config, str(out), batch_size=32, seed=0)
    assert (out / "sentencepiece.model").stat().st_mtime_ns == before  # reused
    # A run without its vocabulary (`evaluate`, a resume): refused, never a new one.
    (out / "sentencepiece.model").unlink()
    with pytest.raises(text_data.DataError, match="holds a run but not its vocabulary"):
        text_data.make_translation_data(spec, config, str(out), batch_size=32, seed=0)
    assert not (out / "sentencepiece.model").exists()

    (tmp_path / "short.de").write_text("Haus\n", encoding="utf-8")
    with pytest.raises(text_data.DataError, match="has 120 lines but"):
        text_data.read_text_pairs(str(tmp_path / "a.en"), str(tmp_path / "short.de"))


def test_tfds_path_with_mock_data(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    spec = text_data.parse_data_spec("tfds:wmt14_translate/de-en")
    with pytest.raises(text_data.DataError, match="not prepared"):
        text_data.make_translation_data(
            spec, _data_config(data_dir=str(tmp_path)), str(tmp_path / "r"), batch_size=8, seed=0
        )
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    config = _data_config(data_dir=str(tmp_path), max_length=64, tokens_per_batch=256)
    with tfds.testing.mock_data(num_examples=40):
        data = text_data.make_translation_data(
            spec, config, str(tmp_path / "run"), batch_size=8, seed=0
        )
        assert data.summary.startswith(
            "tfds:wmt14_translate/de-en (en→de; train / validation / test)"
        )
        assert len(data.validation_pairs) == len(data.test_pairs) == 40
        _check_batches(data, config)
    cached = list((tmp_path / "keras_swish_sentencepiece").glob("*.model"))
    assert len(cached) == 1 and (tmp_path / "run" / "sentencepiece.model").exists()


def _sources(dataset):
    """The source sentences (token ids) of a batched translation dataset, in order."""
    batches = dataset.as_numpy_iterator()
    return [tuple(row[row > 0]) for inputs, _, _ in batches for row in inputs["source"]]


def test_short_epochs_of_a_streamed_split_read_on_through_its_passes(monkeypatch, tmp_path):
    # WMT14's epochs are 1,000 steps, a fraction of a pass over its TFDS records
    # (a stream, shuffled in windows): each epoch must go on where the one
    # before it stopped, not read the first windows of the file again.
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    spec = text_data.parse_data_spec("tfds:wmt14_translate/de-en")
    config = _data_config(
        data_dir=str(tmp_path), max_length=64, tokens_per_batch=256, shuffle_buffer=16
    )
    steps = 3
    with tfds.testing.mock_data(num_examples=400):
        data = text_data.make_translation_data(
            spec, config, str(tmp_path / "run"), batch_size=8, seed=0
        )
        epochs = [_sources(data.train(e, steps).take(steps)) for e in range(6)]
        first_pass = math.ceil(data.steps_per_pass / steps)  # epochs that make a pass
        seen = set()
        for e in range(first_pass):
            seen |= set(_sources(data.train(e, steps).take(steps)))
        everything = set(_sources(data.train().take(data.steps_per_pass)))
        whole = list(data.train(0, steps).take(5 * steps).as_numpy_iterator())
        resumed = list(data.train(3, steps).take(steps).as_numpy_iterator())
    assert data.steps_per_pass >= 30
    # Beyond the bucketing's read-ahead at a boundary, no epoch repeats another.
    for e in range(2, 6):
        assert not set(epochs[e]) & set(epochs[0]), e
    # Most of a pass is read (not all: at each boundary the pairs waiting in
    # partly filled length buckets are dropped, many at 3 steps of <= 8 pairs).
    assert len(seen) >= 0.6 * len(everything)
    # And a resumed run still reads what an uninterrupted one reads.
    assert all(_same_batch(a, b) for a, b in zip(resumed, whole[3 * steps :], strict=False))
    assert len(resumed) == steps


def _write_tfds_metadata(tfds, folder, splits, num_examples):
    """Metadata of a mocked wmt14_translate/de-en with only `splits`, under `folder`."""
    os.makedirs(folder, exist_ok=True)
    with tfds.testing.mock_data(num_examples=num_examples, data_dir=str(folder)):
        builder = tfds.builder("wmt14_translate/de-en", data_dir=str(folder))
        assert str(builder.data_dir).startswith(str(folder)), builder.data_dir
        os.makedirs(builder.data_dir, exist_ok=True)
        infos = [
            tfds.core.SplitInfo(name=name, shard_lengths=[num_examples], num_bytes=0)
            for name in splits
        ]
        builder.info.set_splits(tfds.core.SplitDict(infos))
        builder.info.write_to_directory(builder.data_dir)


@pytest.mark.parametrize("splits", [("train", "test"), ("train", "validation", "test")])
def test_tfds_data_without_a_validation_split_is_refused(splits, monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    meta = tmp_path / "metadata"
    _write_tfds_metadata(tfds, meta, splits, num_examples=8)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    spec = text_data.parse_data_spec("tfds:wmt14_translate/de-en")
    config = _data_config(data_dir=str(tmp_path / "data"), max_length=64, tokens_per_batch=256)
    with tfds.testing.mock_data(num_examples=8, data_dir=str(meta)):
        known = tfds.builder(spec.name, data_dir=config.data_dir).info.splits
        assert sorted(known) == sorted(splits)  # the mock reads the metadata
        if "validation" in splits:  # the control: the same data with one is read
            corpus = text_data._tfds_corpus(spec, config)
            assert len(corpus.validation_pairs) == len(corpus.test_pairs) == 8
            assert "train / validation / test" in corpus.description
            return
        with pytest.raises(text_data.DataError, match="has no validation split"):
            text_data.make_translation_data(
                spec, config, str(tmp_path / "run"), batch_size=8, seed=0
            )
        with pytest.raises(ConfigError, match="models are never chosen on a test split"):
            RECIPE.make_data(
                runner.resolve(
                    "transformer_nmt/wmt14",
                    flags={"data_dir": config.data_dir, "output": str(tmp_path / "run")},
                )[2]
            )
    assert not (tmp_path / "run").exists()


def test_tfds_text_trained_on_test_reports_no_test_bleu(monkeypatch, tmp_path):
    # It reported test BLEU on the pairs it trained on.
    tfds = pytest.importorskip("tensorflow_datasets")
    meta = tmp_path / "metadata"
    _write_tfds_metadata(tfds, meta, ("train", "validation", "test"), num_examples=8)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    config = _data_config(data_dir=str(tmp_path / "data"), max_length=64, tokens_per_batch=256)
    with tfds.testing.mock_data(num_examples=8, data_dir=str(meta)):
        for split, tested in (("train", True), ("test", False), ("test[:50%]", False)):
            spec = text_data.parse_data_spec(f"tfds:wmt14_translate/de-en:{split}")
            corpus = text_data._tfds_corpus(spec, config)
            assert bool(corpus.test_pairs) == tested, split
            assert ("no test split" in corpus.description) != tested, corpus.description


# --- Command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "transformer_nmt", "--activation", "swish_bta"],
            "Unknown activation 'swish_bta'",
        ),
        (["train", "transformer_nmt", "--image-size", "32"], "does not take --image-size"),
        (["train", "transformer_nmt", "--data", "text:/no/such.en,/no/such.de"], "is not a file"),
        (
            [
                "train",
                "transformer_nmt",
                "--data",
                "tfds:wmt14_translate/de-en",
                "--data-dir",
                "{tmp}",
            ],
            "is not prepared",
        ),
        (
            ["train", "transformer_nmt", "--tokens-per-batch", "8"],
            "'data.tokens_per_batch' must be",
        ),
        (["translate", "{tmp}/no-run"], "is not a run folder"),
        (["train", "transformer_nmt", "--data", "folder:{tmp}"], "has no experiment for --data"),
    ],
)
def test_bad_input_exits_2_with_one_message(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    output = tmp_path / "run"
    if args[0] == "train":
        args = [*args, "--output", str(output)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert not output.exists(), "nothing may be written on bad input"


def test_data_found_bad_after_the_vocabulary_is_built_leaves_nothing(tmp_path, capsys):
    # Every pair is longer than data.max_length: found only once the vocabulary exists.
    rng = np.random.default_rng(0)
    words = ["house", "tree", "cat", "dog", "small", "big", "red", "green"]
    lines = [" ".join(rng.choice(words, 12)) for _ in range(60)]
    (tmp_path / "a.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "run"
    args = ["train", "transformer_nmt", "--data", f"text:{tmp_path / 'a.en'},{tmp_path / 'a.de'}"]
    assert main([*args, "--set", "data.max_length=4", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no training pair fits in 4 tokens" in err and len(err.splitlines()) == 1, err
    assert not output.exists(), "nothing may be written on bad input"


def test_translate_needs_a_translation_run(tmp_path, capsys, monkeypatch):
    (tmp_path / "config.yaml").write_text("recipe: mobilenet\n")
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(read=lambda: "Hello\n"))
    assert main(["translate", str(tmp_path)]) == 2
    assert "holds a 'mobilenet' run; translate needs a translation run" in capsys.readouterr().err
