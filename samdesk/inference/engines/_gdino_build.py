"""Building a GroundingDINO model from a config file and a checkpoint, offline.

GroundingDINO's constructor asks ``transformers`` for the tokenizer and for a
pretrained BERT by name, which would reach the Hugging Face hub. samdesk
never does: the tokenizer comes from the local folder
:func:`samdesk.inference.models.paths.bert_dir` and the BERT is built from that
folder's ``config.json`` with untrained weights, which the checkpoint then
overwrites (the official ``groundingdino_swint_ogc.pth`` and
``groundingdino_swinb_cogcoor.pth`` hold every ``bert.*`` weight).
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from samdesk.errorlog import shorten
from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.device import read_checkpoint
from samdesk.inference.models.paths import bert_dir
from samdesk.inference.models.registry import ModelSpec

TOKENIZER_FILES = ("vocab.txt", "config.json")
"""Files the BERT folder must hold (``tokenizer_config.json`` is optional)."""
FETCH_NAME = "groundingdino_swint_ogc"
"""The model whose ``samdesk models fetch`` also fetches the BERT tokenizer."""

# The library looks its BERT helpers up as module attributes while it builds;
# swapping them is process-wide, so builds run one at a time.
_BUILD_LOCK = threading.Lock()


def config_path(spec: ModelSpec) -> Path:
    """The config file named by ``spec.config``.

    A value ending in ``.py`` is a path to a config file; anything else names
    a config shipped in the groundingdino package (``GroundingDINO_SwinT_OGC``).
    """
    if not spec.config:
        raise EngineError(f"{spec.name}: the model spec names no GroundingDINO config")
    value = spec.config
    if value.endswith(".py"):
        path = Path(value).expanduser()
    else:
        import groundingdino

        path = Path(groundingdino.__file__).parent / "config" / f"{value}.py"
    if not path.is_file():
        raise EngineError(f"{spec.name}: GroundingDINO config {path} does not exist")
    return path


def tokenizer_dir(spec: ModelSpec) -> Path:
    """The local BERT tokenizer folder, checked for the files the build reads."""
    folder = bert_dir()
    fetch = spec.name if spec.url else FETCH_NAME
    for name in TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise EngineError(
                f"{spec.name}: BERT tokenizer file {folder / name} is missing; "
                f"run `samdesk models fetch {fetch}` to fetch it"
            )
    return folder


@contextlib.contextmanager
def _offline_bert(folder: Path) -> Iterator[None]:
    """Make the library read its tokenizer and BERT shape from ``folder`` only."""
    from groundingdino.util import get_tokenlizer
    from transformers import AutoTokenizer, BertConfig, BertModel

    def tokenizer(_name: object) -> Any:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def language_model(_name: object) -> BertModel:
        return BertModel(BertConfig.from_pretrained(str(folder), local_files_only=True))

    with (
        _BUILD_LOCK,
        mock.patch.object(get_tokenlizer, "get_tokenlizer", tokenizer),
        mock.patch.object(get_tokenlizer, "get_pretrained_language_model", language_model),
        contextlib.redirect_stdout(io.StringIO()),  # the library prints its encoder type
    ):
        yield


def build_untrained(spec: ModelSpec) -> torch.nn.Module:
    """The architecture ``spec.config`` describes, with untrained weights, on the CPU."""
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    path = config_path(spec)
    folder = tokenizer_dir(spec)
    try:
        args = SLConfig.fromfile(str(path))
    except (OSError, SyntaxError, ValueError, KeyError) as exc:
        raise EngineError(f"{spec.name}: cannot read config {path}: {exc}") from None
    args.device = "cpu"
    args.text_encoder_type = str(folder)
    try:
        with _offline_bert(folder):
            return build_model(args)
    except (AttributeError, KeyError, AssertionError, NotImplementedError) as exc:
        raise EngineError(f"{spec.name}: config {path} is not a GroundingDINO "
                          f"config ({type(exc).__name__}: {exc})") from None
    except (OSError, ValueError) as exc:
        raise EngineError(f"{spec.name}: cannot read the BERT tokenizer in {folder} "
                          f"({shorten(str(exc) or type(exc).__name__, 160)})") from None


def model_state(checkpoint: object, spec: ModelSpec, path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an official-style checkpoint (``{"model": state}``).

    A bare state dict is accepted too; ``module.`` prefixes (DataParallel) go.
    """
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise EngineError(f"{spec.name}: {path} is not a GroundingDINO checkpoint "
                          "(no 'model' state dict)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_state(model: torch.nn.Module, state: Mapping[str, Any], spec: ModelSpec,
               path: Path) -> None:
    """Load every weight of ``model`` from ``state`` or raise a one-line EngineError.

    Extra entries are ignored: the official files carry training-only ones
    (``label_enc.weight``, ``bert.embeddings.position_ids``).
    """
    for key, expected in model.state_dict().items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor):
            raise EngineError(f"{spec.name}: {path} does not fit config {spec.config} "
                              f"(missing weight {key})")
        if got.shape != expected.shape:
            raise EngineError(
                f"{spec.name}: {path} does not fit config {spec.config} ({key} has shape "
                f"{tuple(got.shape)}, the config needs {tuple(expected.shape)})"
            )
    wanted = model.state_dict().keys()
    model.load_state_dict({key: state[key] for key in wanted}, strict=True)


def build_model(spec: ModelSpec, checkpoint: Path | None) -> torch.nn.Module:
    """The GroundingDINO of ``spec`` with the weights in ``checkpoint``, eval mode, CPU."""
    if checkpoint is None:
        raise EngineError(f"{spec.name}: a checkpoint file is needed; "
                          f"run `samdesk models fetch {spec.name}`")
    path = Path(checkpoint)
    loaded = read_checkpoint(path, spec.name)
    state = model_state(loaded, spec, path)
    model = build_untrained(spec)
    load_state(model, state, spec, path)
    return model.eval()
