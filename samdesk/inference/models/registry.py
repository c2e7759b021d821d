"""The registry of known models: one spec per name, with its official checkpoint.

Every model has one name used everywhere (command line, settings, cache
keys). A family names the module and function that build an engine from a
checkpoint; adding a family is one entry in
:data:`samdesk.inference.engines.loading.FAMILY_LOADERS`, never a new branch
in the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from samdesk.errors import EngineError

SEGMENTER = "segmenter"
DETECTOR = "detector"


@dataclass(frozen=True)
class ModelSpec:
    """A model samdesk knows how to run.

    ``config`` is family-specific: the SAM registry key (``vit_b``), the SAM 2
    hydra config name, or the GroundingDINO config module. ``filename``,
    ``url``, ``size`` (bytes) and ``sha256`` describe the official checkpoint
    where one exists; ``None`` where unknown or not needed (GrabCut).
    """

    name: str
    family: str
    kind: str
    title: str
    config: str | None = None
    filename: str | None = None
    url: str | None = None
    size: int | None = None
    sha256: str | None = None

    @property
    def needs_checkpoint(self) -> bool:
        return self.filename is not None


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_GDINO_URL = "https://github.com/IDEA-Research/GroundingDINO/releases/download/"

_SAM2_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

# Size in bytes and sha256 of each official file, or None where no public
# source states it. Nothing here was computed by us from a download (there was
# none); each figure was read from public material, as noted:
# - SAM: sizes and sha256 agree across several independent projects that pin
#   the official files (download managers, 3D Slicer and napari plugins). The
#   hex suffix in the file names (01ec64, 0b3195, 4b8939) is the start of the
#   file's *md5* (e.g. 4b8939a88964f0f4ff5f5b2642c598a6), not of its sha256.
# - SAM 2 (072824): sha256 from the 3D Slicer SAM extension and other pinning
#   projects; tiny and small sizes from single project manifests; base+ and
#   large sizes not found.
# - SAM 2.1 (092824): sha256 from several pinning projects (also matching the
#   Hugging Face facebook/sam2.1-hiera-* copies); sizes from project manifests.
# - GroundingDINO: sha256 and sizes from several projects pinning the GitHub
#   release assets v0.1.0-alpha / v0.1.0-alpha2.
_CHECKSUMS: dict[str, tuple[int | None, str | None]] = {
    "sam_vit_b": (375_042_383,
                  "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "sam_vit_l": (1_249_524_607,
                  "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "sam_vit_h": (2_564_550_879,
                  "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "sam2_hiera_tiny": (155_906_050,
                        "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
    "sam2_hiera_small": (184_309_650,
                         "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
    "sam2_hiera_base_plus": (None,
                             "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
    "sam2_hiera_large": (None,
                         "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
    "sam2.1_hiera_tiny": (156_008_466,
                          "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    "sam2.1_hiera_small": (184_416_285,
                           "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    "sam2.1_hiera_base_plus": (323_606_802,
                               "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    "sam2.1_hiera_large": (898_083_611,
                           "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    "groundingdino_swint_ogc": (693_997_677,
                                "3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799"),
    "groundingdino_swinb": (938_057_991,
                            "46270f7a822e6906b655b729c90613e48929d0f2bb8b9b76fd10a856f3ac6ab7"),
}


def _checksum(name: str) -> dict[str, Any]:
    size, sha256 = _CHECKSUMS.get(name, (None, None))
    return {"size": size, "sha256": sha256}


def _sam2_specs() -> list[ModelSpec]:
    specs = []
    for version, folder, url in (("sam2", "sam2", _SAM2_URL), ("sam2.1", "sam2.1", _SAM21_URL)):
        for size, short in _SAM2_SIZES.items():
            name = f"{version}_hiera_{size}"
            specs.append(
                ModelSpec(
                    name=name,
                    family="sam2",
                    kind=SEGMENTER,
                    title=f"SAM {version[3:]} Hiera {size.replace('_plus', '+')}",
                    config=f"configs/{folder}/{version}_hiera_{short}.yaml",
                    filename=f"{name}.pt",
                    url=f"{url}{name}.pt",
                    **_checksum(name),
                )
            )
    return specs


_BUILTIN: list[ModelSpec] = [
    ModelSpec("grabcut", "grabcut", SEGMENTER, "GrabCut (OpenCV, no checkpoint)"),
    ModelSpec("sam_vit_b", "sam", SEGMENTER, "SAM ViT-B", "vit_b",
              "sam_vit_b_01ec64.pth", _SAM_URL + "sam_vit_b_01ec64.pth",
              **_checksum("sam_vit_b")),
    ModelSpec("sam_vit_l", "sam", SEGMENTER, "SAM ViT-L", "vit_l",
              "sam_vit_l_0b3195.pth", _SAM_URL + "sam_vit_l_0b3195.pth",
              **_checksum("sam_vit_l")),
    ModelSpec("sam_vit_h", "sam", SEGMENTER, "SAM ViT-H", "vit_h",
              "sam_vit_h_4b8939.pth", _SAM_URL + "sam_vit_h_4b8939.pth",
              **_checksum("sam_vit_h")),
    *_sam2_specs(),
    ModelSpec("groundingdino_swint_ogc", "groundingdino", DETECTOR,
              "GroundingDINO Swin-T OGC", "GroundingDINO_SwinT_OGC",
              "groundingdino_swint_ogc.pth",
              _GDINO_URL + "v0.1.0-alpha/groundingdino_swint_ogc.pth",
              **_checksum("groundingdino_swint_ogc")),
    ModelSpec("groundingdino_swinb", "groundingdino", DETECTOR,
              "GroundingDINO Swin-B", "GroundingDINO_SwinB_cfg",
              "groundingdino_swinb_cogcoor.pth",
              _GDINO_URL + "v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",
              **_checksum("groundingdino_swinb")),
]


@dataclass(frozen=True)
class RemoteFile:
    """One extra file a model needs besides its checkpoint (size in bytes)."""

    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None


# GroundingDINO's text encoder tokenizer, fetched into ``paths.bert_dir()`` so
# that nothing is looked up on a hub at run time. Pinned to one revision of
# google-bert/bert-base-uncased so the hashes cannot drift. Sources: the
# sha256 of all three files at this revision are pinned by a public project
# (M2D-CLAP runtime); sizes and git blob ids by another (ViPE checkpoint
# list); config.json and tokenizer_config.json were also re-created byte for
# byte and hashed here, matching both.
_BERT_REVISION = "86b5e0934494bd15c9632b12f734a8a67f723594"
_BERT_URL = f"https://huggingface.co/google-bert/bert-base-uncased/resolve/{_BERT_REVISION}/"
BERT_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("vocab.txt", _BERT_URL + "vocab.txt", 231_508,
               "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    RemoteFile("tokenizer_config.json", _BERT_URL + "tokenizer_config.json", 48,
               "a025160ef0431f1a392f6f050c1310f4c5d9fb6f275932dbccba73c4d214bf10"),
    RemoteFile("config.json", _BERT_URL + "config.json", 570,
               "7160e1553ad2ca51d8c1cb066be533db31826e12d173824c1bb0cb1a4f187d20"),
)

# Families whose engines read the BERT tokenizer files in ``BERT_FILES``.
FAMILIES_NEEDING_BERT = frozenset({"groundingdino"})

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _BUILTIN}

REMOTE_PREFIX = "server:"
"""A model served by ``samdesk serve`` is named ``server:URL#MODEL``."""


def remote_name(url: str, model: str) -> str:
    """The name of ``model`` on the server at ``url``: ``server:URL#MODEL``."""
    return f"{REMOTE_PREFIX}{url.rstrip('/')}#{model}"


def parse_remote_name(name: str) -> tuple[str, str]:
    """``(url, model)`` of a ``server:URL#MODEL`` name; a clear error for a malformed one."""
    url, _, model = name[len(REMOTE_PREFIX):].rpartition("#")
    if not name.startswith(REMOTE_PREFIX) or not model or not url.startswith(
            ("http://", "https://")):
        raise EngineError(f"model {name!r}: a server's model is named server:URL#MODEL, "
                          "e.g. server:http://127.0.0.1:9001#sam_vit_b")
    return url.rstrip("/"), model


def _remote_spec(name: str) -> ModelSpec:
    """The spec of a server's model: the family ``remote``, the kind of the model it names
    (a name this registry does not know is taken for a segmenter)."""
    url, model = parse_remote_name(name)
    inner = MODELS.get(model)
    kind = inner.kind if inner is not None else SEGMENTER
    title = f"{inner.title if inner is not None else model} on {url}"
    return ModelSpec(name, "remote", kind, title, config=model)


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name`` (``server:URL#MODEL`` too), or an error listing the known names."""
    if name.startswith(REMOTE_PREFIX):
        return _remote_spec(name)
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(MODELS)
        raise EngineError(f"unknown model {name!r}; known models: {known}") from None
