"""Torch runtime helpers shared by the engines.

- :func:`resolve_device` turns the user's device choice (``auto``, ``cpu``,
  ``cuda``, ``gpu``, ``mps``) into a ``torch.device``; AUTO prefers CUDA, then
  Apple MPS, then the CPU.
- :func:`encoder_autocast` runs an image encoder in bf16 on CUDA where the
  model supports it; elsewhere it changes nothing.
- :func:`configure_cpu_threads` and :func:`release_memory` manage the CPU
  thread pool and cached accelerator memory.
- :func:`read_checkpoint` and :func:`load_weights` read a checkpoint file and
  load it into a module, turning every failure into a one-line
  :class:`EngineError` that names the model and the file.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from samdesk.errorlog import shorten
from samdesk.inference.engines.base import EngineError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "gpu", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(choice: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice.

    ``auto``: CUDA if present, then MPS, then CPU. ``gpu``: CUDA, then MPS,
    and an error when neither exists. ``cuda`` (or ``cuda:N``) and ``mps``
    must exist. Raises :class:`EngineError` naming the choice otherwise.
    """
    if isinstance(choice, torch.device):
        choice = str(choice)
    name = choice.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "gpu":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        raise EngineError("device 'gpu': no CUDA or MPS GPU is available; use 'cpu' or 'auto'")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise EngineError(f"device {choice!r}: CUDA is not available; use 'cpu' or 'auto'")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(
                f"device {choice!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return device
    if name == "mps":
        if not _mps_available():
            raise EngineError(f"device {choice!r}: Apple MPS is not available; use 'cpu'")
        return torch.device("mps")
    raise EngineError(f"device {choice!r} is not one of {', '.join(DEVICE_CHOICES)}")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worth using on ``device`` (CUDA with bf16 only)."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@contextlib.contextmanager
def encoder_autocast(device: torch.device, model_supports_bf16: bool) -> Iterator[None]:
    """Run the enclosed image encoder in bf16 on CUDA when the model allows it.

    On the CPU, MPS, or for a model that does not support bf16, this is a
    no-op, so CPU results stay bit-identical to the reference predictors.
    Callers convert the encoder's outputs back to float32.
    """
    if model_supports_bf16 and bf16_supported(device):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU thread count and return the value in use.

    ``None`` uses every core the process may run on; other values are clamped
    to ``1 .. cores``.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        cores = os.cpu_count() or 1
    wanted = cores if threads is None else max(1, min(int(threads), cores))
    torch.set_num_threads(wanted)
    return torch.get_num_threads()


def release_memory(device: torch.device | None = None) -> None:
    """Free Python garbage and the accelerator's cached, unused memory.

    Call after dropping an engine (switching models) so the memory goes back
    to the system; harmless on the CPU.
    """
    gc.collect()
    kind = device.type if device is not None else None
    if kind in (None, "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if kind in (None, "mps") and _mps_available():
        torch.mps.empty_cache()


def read_checkpoint(path: Path, model_name: str) -> object:
    """Load a checkpoint file onto the CPU without running pickled code.

    Raises :class:`EngineError` "``model_name``: ``path`` ..." when the file
    is missing, unreadable, truncated or not a torch file; whatever torch's
    unpickler raises on a damaged file (``IndexError`` on one byte,
    ``UnpicklingError``...) is that one line, its reason cut at a word.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{model_name}: checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # any failure to unpickle is a damaged file
        try:
            count = path.stat().st_size
            size = f"{count:,} byte{'' if count == 1 else 's'}"
        except OSError:
            size = "unreadable"
        raise EngineError(
            f"{model_name}: {path} is not a readable checkpoint ({size}; truncated or "
            f"corrupt file: {_load_failure(exc)})"
        ) from None


def _load_failure(exc: BaseException) -> str:
    """The telling part of a ``torch.load`` failure, on one line of at most 160 characters.

    A weights-only load wraps the unpickler's reason in paragraphs of advice
    about ``weights_only``; the reason is what follows ``WeightsUnpickler error:``.
    """
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n", 1)[0]
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return shorten(line or type(exc).__name__, 160)


def load_weights(
    module: torch.nn.Module,
    state: Mapping[str, object],
    model_name: str,
    path: Path,
    family: str,
) -> None:
    """Load ``state`` into ``module`` strictly, or raise a one-line EngineError.

    The message names the model, the file, and the first missing key,
    unexpected key or shape mismatch (a file for another model size).
    """
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise EngineError(f"{model_name}: {path} is not a {family} checkpoint "
                              f"(missing key {key})")
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise EngineError(f"{model_name}: {path} is not a {family} checkpoint "
                              f"({key} is not a tensor)")
        if got.shape != value.shape:
            raise EngineError(
                f"{model_name}: {path} holds another model size ({key} has shape "
                f"{tuple(got.shape)}, {model_name} needs {tuple(value.shape)})"
            )
    extra = [key for key in state if key not in expected]
    if extra:
        raise EngineError(f"{model_name}: {path} holds another model "
                          f"(unexpected key {extra[0]})")
    module.load_state_dict(dict(state), strict=True)
