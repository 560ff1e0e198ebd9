"""Transformer base: the paper's WMT14 English→German row, with the FFN activation as a flag.

The paper's BLEU on newstest2013 / 2014 / 2015 / 2016: ReLU 26.1 / 27.8 /
29.8 / 33.3, Swish-1 26.2 / 28.0 / 30.1 / 34.0, Swish (trainable β) 26.5 /
27.6 / 30.0 / 33.1: 6 + 6 layers, 300K steps, Adam, otherwise the settings
of Vaswani et al. (2017).

Run:
    keras-swish train transformer_nmt                  # transformer_nmt/embedded: CPU, ~3 min
    keras-swish translate runs/transformer_nmt-embedded-swish_beta < sentences.txt
    keras-swish train transformer_nmt/wmt14 --activation relu --data-dir ~/tensorflow_datasets

`transformer_nmt/wmt14` takes its constants from Vaswani et al. (2017),
"Attention Is All You Need", section 5 and Table 3 (base): d_model 512, 8
heads, FFN 2048, 6 encoder + 6 decoder layers, dropout 0.1 on the residuals and
the embeddings and none on the attention probabilities (section 5.4; keras-hub's
layers would use it there too: `model.attention_dropout` 0), one shared BPE
vocabulary (32k here; the paper's ~37k) tied with the output projection,
sinusoidal positions, post-layer-norm; Adam (β1 0.9, β2 0.98, ε 1e-9) with
lr = d_model^−0.5 · min(step^−0.5, step · 4000^−1.5); label smoothing 0.1;
batches of about 25,000 tokens bucketed by length; beam 4 with length
penalty 0.6; BLEU by sacreBLEU on detokenized text (validation:
newstest2013, test: newstest2014) of the average of the last 5 checkpoints
(section 6.1: `averaged.keras`, the model the run reports; `best.keras`,
chosen by validation accuracy, is evaluated beside it). One "epoch" is 1,000
steps (how often it validates and saves, and the checkpoints averaged), so
300 epochs are the paper's 300K steps.
`train.batch_size` caps the sentences in one batch; `--tokens-per-batch`
sets the batch by tokens. `transformer_nmt/text` is the same model and
schedule on your own line-aligned files (`--data text:SRC,TGT`).

`transformer_nmt/embedded` shrinks it to 1,938 short English–German UI
strings from the Django and JupyterLab German catalogs (split by the
normalized English text: about 1,580 train / 180 validation / 180 test):
d_model 128, 4 heads, FFN 512, 2 + 2 layers, a 1,000-piece vocabulary, 600
tokens a batch, warm-up 300 steps, 25 epochs of one pass each, the last 5
averaged. About 3 minutes on 2 CPU cores; sacreBLEU of averaged.keras about
24–26 on the validation pairs and 17–18 on the test pairs (seeds 0 and 1;
an untrained model: below 0.1).
"""

import dataclasses

from keras_swish.recipes.core.config import TrainConfig
from keras_swish.recipes.core.registry import Experiment, register_experiment, register_recipe
from keras_swish.recipes.tasks import translation

REFERENCE = "Vaswani et al. (2017), Attention Is All You Need, section 5 and Table 3 (base)"


@dataclasses.dataclass
class Config:
    """Transformer base on WMT14 En→De with Vaswani et al.'s constants."""

    model: translation.TransformerConfig = dataclasses.field(
        default_factory=translation.TransformerConfig
    )
    data: translation.TranslationDataConfig = dataclasses.field(
        default_factory=translation.TranslationDataConfig
    )
    optimizer: translation.AdamConfig = dataclasses.field(default_factory=translation.AdamConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            epochs=300,
            steps_per_epoch=1000,
            batch_size=4096,
            label_smoothing=0.1,
            # Vaswani et al., section 6.1: the base model reported is the
            # average of the last 5 checkpoints (written every 10 minutes,
            # ~1,400 steps; here every epoch, 1,000 steps).
            average_last=5,
        )
    )


RECIPE = register_recipe(
    translation.translation_recipe(
        name="transformer_nmt",
        summary="Transformer base, WMT14 En→De (paper: BLEU 27.8 ReLU / 27.6 Swish, newstest2014)",
        default_config=Config,
        docs=__doc__,
    )
)

register_experiment(
    Experiment(
        name="transformer_nmt/wmt14",
        recipe="transformer_nmt",
        summary="WMT14 En→De (TFDS wmt14_translate/de-en), Transformer base, 300K steps",
        data=("tfds:wmt14_translate/*",),
        overrides={"data": {"source": "tfds:wmt14_translate/de-en"}},
        reference=REFERENCE,
    )
)

register_experiment(
    Experiment(
        name="transformer_nmt/text",
        recipe="transformer_nmt",
        summary="your own parallel text files (--data text:SRC,TGT), Transformer base",
        data=("text:*",),
        reference=REFERENCE,
    )
)

register_experiment(
    Experiment(
        name="transformer_nmt/embedded",
        recipe="transformer_nmt",
        summary="embedded English–German UI strings: a small Transformer, ~3 min on a CPU",
        data=("embedded",),
        overrides={
            "model": {
                "d_model": 128,
                "num_heads": 4,
                "ffn_dim": 512,
                "encoder_layers": 2,
                "decoder_layers": 2,
            },
            "data": {
                "source": None,
                "vocab_size": 1000,
                "max_length": 48,
                "tokens_per_batch": 600,
                "shuffle_buffer": 4000,
                "sentencepiece_sentences": 0,
            },
            "optimizer": {"warmup_steps": 300, "scale": 1.0},
            "train": {"epochs": 25, "steps_per_epoch": None, "batch_size": 64},
        },
        reference="the WMT14 settings, shrunk to ~1,600 short training pairs",
        default=True,
    )
)
