"""A small random-weight GroundingDINO, saved like the official checkpoint.

The model is built by the groundingdino library's own code path
(``SLConfig.fromfile`` + ``build_model``) from a small config file written
here, with a tiny BERT whose vocabulary is written to ``vocab.txt``. The
checkpoint is ``{"model": state_dict}`` like ``groundingdino_swint_ogc.pth``,
so it carries the ``bert.*`` weights; the models folder gets only the
tokenizer files (``vocab.txt``, ``tokenizer_config.json``, ``config.json``),
exactly what ``samdesk models fetch`` puts there.

Import it from tests::

    tiny = build_tiny_gdino(tmp_path_factory.mktemp("gdino"))
    install_tiny_gdino(monkeypatch, tiny)
    detector = loading.load_model(tiny.spec.name, tiny.checkpoint)
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from samdesk.inference.models import registry
from samdesk.inference.models.paths import BERT_DIRNAME

VOCAB_WORDS = (
    "a an the and of on in with cat cats dog dogs person people car cars red blue green "
    "small big tree house bird sky road chair table cup bottle"
).split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = [".", "?", ",", "!"]

# The architecture of GroundingDINO_SwinT_OGC, shrunk where the config allows
# it (the Swin-T backbone itself is fixed by name in the library).
TINY_CONFIG = """\
batch_size = 1
modelname = "groundingdino"
backbone = "swin_T_224_1k"
position_embedding = "sine"
pe_temperatureH = 20
pe_temperatureW = 20
return_interm_indices = [3]
backbone_freeze_keywords = None
enc_layers = 1
dec_layers = 2
pre_norm = False
dim_feedforward = 256
hidden_dim = 256
dropout = 0.0
nheads = 8
num_queries = 40
query_dim = 4
num_patterns = 0
num_feature_levels = 2
enc_n_points = 4
dec_n_points = 4
two_stage_type = "standard"
two_stage_bbox_embed_share = False
two_stage_class_embed_share = False
transformer_activation = "relu"
dec_pred_bbox_embed_share = True
dn_box_noise_scale = 1.0
dn_label_noise_ratio = 0.5
dn_label_coef = 1.0
dn_bbox_coef = 1.0
embed_init_tgt = True
dn_labelbook_size = 2000
max_text_len = 256
text_encoder_type = "bert-base-uncased"
use_text_enhancer = True
use_fusion_layer = True
use_checkpoint = False
use_transformer_ckpt = False
use_text_cross_attention = True
text_dropout = 0.0
fusion_dropout = 0.0
fusion_droppath = 0.0
sub_sentence_present = True
"""


@dataclass
class TinyGdino:
    """Everything a test needs: files on disk and the in-memory reference model.

    ``model`` is the ``GroundingDINO`` module whose ``state_dict`` was saved to
    ``checkpoint``; ``models_dir`` is the folder to point ``SAMDESK_MODELS`` at.
    """

    models_dir: Path
    config: Path
    checkpoint: Path
    spec: registry.ModelSpec
    model: torch.nn.Module


def write_tokenizer(folder: Path) -> Path:
    """Write a tiny BERT tokenizer and its ``config.json`` into ``folder``."""
    from transformers import BertConfig, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL_TOKENS + PUNCTUATION + VOCAB_WORDS) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS + PUNCTUATION + VOCAB_WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config.save_pretrained(str(folder))
    return folder


def _build_reference(config: Path, bert_with_weights: Path) -> torch.nn.Module:
    """Build the model the way ``groundingdino.util.inference.load_model`` does."""
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from transformers import BertConfig, BertModel

    BertModel(BertConfig.from_pretrained(str(bert_with_weights))).save_pretrained(
        str(bert_with_weights)
    )
    args = SLConfig.fromfile(str(config))
    args.device = "cpu"
    args.text_encoder_type = str(bert_with_weights)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints its encoder type
        model = build_model(args)
    # The library zero-initialises the last box layers; give them weights so
    # that a loader that dropped them would move the boxes.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_embed" in name and param.abs().sum() == 0:
                param.normal_(0.0, 0.05)
    return model.eval()


def build_tiny_gdino(root: Path, seed: int = 0) -> TinyGdino:
    """Create config, tokenizer folder and checkpoint under ``root``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    config = root / "tiny_gdino_cfg.py"
    config.write_text(TINY_CONFIG)
    models_dir = root / "models"
    write_tokenizer(models_dir / BERT_DIRNAME)
    bert_with_weights = write_tokenizer(root / "bert_with_weights")
    model = _build_reference(config, bert_with_weights)
    checkpoint = models_dir / "tiny_gdino.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    spec = registry.ModelSpec(
        name="tiny_gdino_test",
        family="groundingdino",
        kind=registry.DETECTOR,
        title="Tiny random GroundingDINO (tests)",
        config=str(config),
        filename=checkpoint.name,
    )
    return TinyGdino(models_dir, config, checkpoint, spec, model)


def install_tiny_gdino(monkeypatch: pytest.MonkeyPatch, tiny: TinyGdino) -> None:
    """Point ``SAMDESK_MODELS`` at the tiny models folder and register its spec."""
    monkeypatch.setenv("SAMDESK_MODELS", str(tiny.models_dir))
    monkeypatch.setitem(registry.MODELS, tiny.spec.name, tiny.spec)


_SHARED: dict[str, TinyGdino] = {}


def shared_tiny_gdino(tmp_path_factory: pytest.TempPathFactory) -> TinyGdino:
    """One tiny GroundingDINO per test session (building one takes seconds)."""
    if "tiny" not in _SHARED:
        _SHARED["tiny"] = build_tiny_gdino(tmp_path_factory.mktemp("tiny_gdino"))
    return _SHARED["tiny"]


def scene_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 RGB scene: a gradient with solid shapes and grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 120],
                     axis=2)
    for _ in range(4):
        x0, x1 = np.sort(rng.integers(0, width, 2))
        y0, y1 = np.sort(rng.integers(0, height, 2))
        image[y0:y1 + 1, x0:x1 + 1] = rng.integers(0, 256, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
