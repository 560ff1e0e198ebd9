"""The translation task: data, loss, metrics, BLEU and `translate` of the NMT recipe.

The model (`keras_swish.recipes.models.transformer`) is Transformer base with
the activation in every feed-forward network; the recipe and its
experiments (`transformer_nmt/wmt14`, `transformer_nmt/embedded`, ...) live
in `keras_swish.recipes.configs.transformer_nmt`.

BLEU is sacreBLEU on detokenized text, computed twice: with the standard
`13a` tokenizer (`bleu`, sacreBLEU's default, the number to compare with
other sacreBLEU results) and with the `intl` tokenizer (`bleu_intl`, which
splits punctuation and symbols as the tokenized BLEU of the tensor2tensor
era did; it is the closer of the two to the paper's numbers, which were
tokenized BLEU and typically run 0.5–1 point above sacreBLEU 13a).
"""

import dataclasses
import os

from keras_swish.recipes.core.config import ConfigError, check, validate_train
from keras_swish.recipes.core.registry import Recipe
from keras_swish.recipes.data.text import DataError, parse_data_spec
from keras_swish.recipes.models.activations import check_activation


@dataclasses.dataclass
class TransformerConfig:
    activation: str = "swish_beta"  # in every FFN
    d_model: int = 512
    num_heads: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1  # residual and embedding dropout (Vaswani et al., section 5.4)
    # On the attention probabilities: none in Vaswani et al. (tensor2tensor's
    # transformer_base_v1: attention_dropout 0.0). keras-hub's layers would use
    # `dropout` there too; the recipe sets this rate in training (a saved model's
    # layers keep keras-hub's config: loaded and trained further, they use `dropout`
    # unless `models.transformer.set_transformer_attention_dropout` sets it again).
    attention_dropout: float = 0.0
    positions: str = "sinusoidal"  # or "learned"
    normalize_first: bool = False  # False: post-layer-norm, as in the paper
    beam_size: int = 4  # decoding for BLEU and `translate`
    length_penalty: float = 0.6


@dataclasses.dataclass
class TranslationDataConfig:
    source: str | None = None  # --data; None: the embedded pairs
    data_dir: str | None = None  # --data-dir
    source_language: str = "en"
    target_language: str = "de"
    vocab_size: int = 32000  # most SentencePiece BPE pieces, shared
    max_length: int = 256  # tokens a side (EOS included); longer training pairs dropped
    tokens_per_batch: int = 25000  # padded tokens of the longer side
    shuffle_buffer: int = 100000
    validation_fraction: float = 0.1  # embedded and text: held out by hash
    test_fraction: float = 0.1
    sentencepiece_sentences: int = 2000000  # sampled to train the vocabulary (0: all)
    length_sample: int = 20000  # TFDS pairs tokenized to plan the batches


@dataclasses.dataclass
class AdamConfig:
    warmup_steps: int = 4000
    scale: float = 1.0  # lr = scale · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5)
    beta_1: float = 0.9
    beta_2: float = 0.98
    epsilon: float = 1e-9
    clipnorm: float | None = None


FLAGS = {
    "activation": "model.activation",
    "data": "data.source",
    "data_dir": "data.data_dir",
    "epochs": "train.epochs",
    "steps_per_epoch": "train.steps_per_epoch",
    "batch_size": "train.batch_size",
    "output": "train.output",
    "strategy": "train.strategy",
    "tpu": "train.tpu",
    "precision": "train.precision",
    "seed": "train.seed",
    "vocab_size": "data.vocab_size",
    "tokens_per_batch": "data.tokens_per_batch",
    "max_length": "data.max_length",
    "beam_size": "model.beam_size",
    "length_penalty": "model.length_penalty",
}

EXTRA_FLAGS = {
    "vocab_size": {"type": int, "metavar": "N", "help": "most SentencePiece BPE pieces"},
    "tokens_per_batch": {
        "type": int,
        "metavar": "N",
        "help": "padded tokens a batch (bucketed by length)",
    },
    "max_length": {"type": int, "metavar": "N", "help": "most tokens a sentence"},
    "beam_size": {"type": int, "metavar": "N", "help": "beam width for BLEU and translate"},
    "length_penalty": {"type": float, "metavar": "A", "help": "beam-search length penalty α"},
}


def validate(config):
    model, data, opt, train = config.model, config.data, config.optimizer, config.train
    try:
        check_activation(model.activation)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        parse_data_spec(data.source)
    except DataError as error:
        raise ConfigError(str(error)) from None
    for key in ("d_model", "num_heads", "ffn_dim", "encoder_layers", "decoder_layers"):
        value = getattr(model, key)
        check(value >= 1, f"model.{key}", value, "at least 1")
    check(
        model.d_model % model.num_heads == 0,
        "model.d_model",
        model.d_model,
        f"a multiple of model.num_heads ({model.num_heads})",
    )
    check(0 <= model.dropout < 1, "model.dropout", model.dropout, "in [0, 1)")
    check(
        0 <= model.attention_dropout < 1,
        "model.attention_dropout",
        model.attention_dropout,
        "in [0, 1)",
    )
    check(
        model.positions in ("sinusoidal", "learned"),
        "model.positions",
        model.positions,
        "'sinusoidal' or 'learned'",
    )
    check(model.beam_size >= 1, "model.beam_size", model.beam_size, "at least 1")
    check(model.length_penalty >= 0, "model.length_penalty", model.length_penalty, ">= 0")
    check(data.vocab_size >= 16, "data.vocab_size", data.vocab_size, "at least 16")
    check(data.max_length >= 4, "data.max_length", data.max_length, "at least 4")
    check(
        data.tokens_per_batch >= data.max_length,
        "data.tokens_per_batch",
        data.tokens_per_batch,
        f"at least data.max_length ({data.max_length}) so that every sentence fits",
    )
    check(data.shuffle_buffer >= 1, "data.shuffle_buffer", data.shuffle_buffer, "positive")
    check(
        data.source_language != data.target_language,
        "data.target_language",
        data.target_language,
        "another language than data.source_language",
    )
    for key in ("validation_fraction", "test_fraction"):
        value = getattr(data, key)
        check(0 < value < 0.5, f"data.{key}", value, "in (0, 0.5)")
    check(
        data.sentencepiece_sentences >= 0,
        "data.sentencepiece_sentences",
        data.sentencepiece_sentences,
        ">= 0 (0: all)",
    )
    check(data.length_sample >= 1, "data.length_sample", data.length_sample, "positive")
    check(opt.warmup_steps >= 1, "optimizer.warmup_steps", opt.warmup_steps, "at least 1")
    check(opt.scale > 0, "optimizer.scale", opt.scale, "positive")
    check(0 <= opt.beta_1 < 1, "optimizer.beta_1", opt.beta_1, "in [0, 1)")
    check(0 <= opt.beta_2 < 1, "optimizer.beta_2", opt.beta_2, "in [0, 1)")
    check(opt.epsilon > 0, "optimizer.epsilon", opt.epsilon, "positive")
    check(
        opt.clipnorm is None or opt.clipnorm > 0,
        "optimizer.clipnorm",
        opt.clipnorm,
        "positive (or null for none)",
    )
    validate_train(train)


def make_data(config):
    from keras_swish.recipes.data.text import make_translation_data

    try:
        return make_translation_data(
            parse_data_spec(config.data.source),
            config.data,
            config.train.output,
            batch_size=config.train.batch_size,
            seed=config.train.seed,
        )
    except DataError as error:
        raise ConfigError(str(error)) from None


def make_model(config, data):
    from keras_swish.recipes.models.transformer import build_transformer

    return build_transformer(config.model, data.vocab_size, config.data.max_length)


def make_schedule(config, steps_per_pass):
    """Vaswani et al.'s schedule; it counts optimizer steps, as the reference does."""
    from keras_swish.recipes.models.transformer import TransformerSchedule

    opt = config.optimizer
    return TransformerSchedule(config.model.d_model, opt.warmup_steps, opt.scale)


def make_optimizer(config, schedule):
    import keras

    opt = config.optimizer
    return keras.optimizers.Adam(
        learning_rate=schedule,
        beta_1=opt.beta_1,
        beta_2=opt.beta_2,
        epsilon=opt.epsilon,
        clipnorm=opt.clipnorm,
    )


def make_loss(config):
    from keras_swish.recipes.models.transformer import SmoothedSparseCrossentropy

    return SmoothedSparseCrossentropy(label_smoothing=config.train.label_smoothing)


def make_metrics(config):
    import keras

    # With the batches' sample weights (0 on padding): accuracy over real tokens.
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def translate_pairs(config, model, processor, pairs):
    """(detokenized translations, references) of `pairs` with the config's beam."""
    from keras_swish.recipes.tasks.decoding import translate_texts

    hypotheses = translate_texts(
        model,
        processor,
        [source for source, _ in pairs],
        beam_size=config.model.beam_size,
        alpha=config.model.length_penalty,
        max_length=config.data.max_length,
    )
    return hypotheses, [reference for _, reference in pairs]


def final_metrics(config, model, data):
    """sacreBLEU (13a and intl) on the validation and test pairs, with signatures."""
    from keras_swish.recipes.data.text import load_sentencepiece
    from keras_swish.recipes.tasks.decoding import corpus_bleu

    processor = load_sentencepiece(data.sentencepiece_model)
    metrics = {}
    for prefix, pairs in (("val_", data.validation_pairs), ("test_", data.test_pairs)):
        if not pairs:
            continue
        hypotheses, references = translate_pairs(config, model, processor, pairs)
        for tokenizer, suffix in (("13a", ""), ("intl", "_intl")):
            score, signature = corpus_bleu(hypotheses, references, tokenize=tokenizer)
            metrics[f"{prefix}bleu{suffix}"] = round(score, 4)
            metrics[f"bleu{suffix}_signature"] = signature
    return metrics


def translator(run_dir, beam_size=None, length_penalty=None):
    """A function that translates sentences with the model of `run_dir`.

    The model the run reports (`averaged.keras`, the mean of its last
    checkpoints, else `best.keras`: the one `metrics.json` reports) and its
    SentencePiece model are loaded at once, so that a bad run folder fails
    before any input is read.

    Args:
        run_dir: A `transformer_nmt` run folder.
        beam_size: Default: the run's `model.beam_size`.
        length_penalty: Default: the run's `model.length_penalty`.

    Returns:
        `translate(sentences) -> list of str`: one detokenized translation
        per source sentence ("" for a blank one).
    """
    import keras

    from keras_swish.recipes.core import runner
    from keras_swish.recipes.data.text import load_sentencepiece

    recipe, config = runner.load_run_config(run_dir)
    if recipe.task != "translation":
        raise ConfigError(
            f"{run_dir} holds a '{recipe.name}' run; translate needs a translation run."
        )
    changes = {"beam_size": beam_size, "length_penalty": length_penalty}
    changes = {key: value for key, value in changes.items() if value is not None}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))
    validate(config)
    model_path = runner.model_path(run_dir)
    vocabulary = os.path.join(run_dir, "sentencepiece.model")
    if not os.path.exists(vocabulary):
        raise ConfigError(f"{run_dir} has no sentencepiece.model.")
    model = keras.models.load_model(model_path)
    processor = load_sentencepiece(vocabulary)

    def translate(sentences):
        texts = [s for s in sentences if s.strip()]
        hypotheses, _ = translate_pairs(config, model, processor, [(s, "") for s in texts])
        translated = iter(hypotheses)
        return [next(translated) if s.strip() else "" for s in sentences]

    return translate


def translation_recipe(name, summary, default_config, docs):
    """The translation `Recipe` with the config dataclass `default_config`."""
    return Recipe(
        name=name,
        task="translation",
        summary=summary,
        default_config=default_config,
        validate=validate,
        make_data=make_data,
        make_model=make_model,
        make_schedule=make_schedule,
        make_optimizer=make_optimizer,
        make_loss=make_loss,
        make_metrics=make_metrics,
        monitor="val_accuracy",
        flags=FLAGS,
        extra_flags=EXTRA_FLAGS,
        final_metrics=final_metrics,
        docs=docs,
        # Vaswani's rate is a formula of d_model and the step: compare scales it.
        learning_rate_key="optimizer.scale",
        schedule_needs_data=False,  # Vaswani's: a formula of the step
    )
