"""Which served model a request means: Roboflow's version ids to samdesk names.

``sam_version_id`` ``vit_b|vit_l|vit_h`` picks SAM; ``sam2_version_id``
``hiera_tiny|hiera_small|hiera_b_plus|hiera_large`` picks SAM 2, the 2.1
checkpoint unless only a 2.0 one of that size is served. A samdesk model name
(``sam2_hiera_tiny``) is accepted as a version id too. Without a version id,
the only served model of the family is used (else the seed's default,
``vit_h`` / ``hiera_large``).
"""

from __future__ import annotations

from samdesk.inference.models.registry import DETECTOR, MODELS, ModelSpec
from samdesk.server.scheduler import ModelUnavailable
from samdesk.server.settings import ServerSettings

_SAM2_SHORT = {"hiera_tiny": "t", "hiera_small": "s", "hiera_b_plus": "b+",
               "hiera_base_plus": "b+", "hiera_large": "l"}
_DEFAULT = {"sam": "vit_h", "sam2": "hiera_large"}


def _candidates(settings: ServerSettings, family: str | None = None,
                kind: str | None = None) -> list[ModelSpec]:
    names = list(settings.models) or list(MODELS)
    specs = [MODELS[n] for n in names if n in MODELS]
    return [s for s in specs if (family is None or s.family == family)
            and (kind is None or s.kind == kind)]


def _matches(spec: ModelSpec, family: str, version: str) -> bool:
    if version in (spec.name, spec.config):
        return True
    if family == "sam":
        return spec.name == f"sam_{version}"
    short = _SAM2_SHORT.get(version)
    return short is not None and (spec.config or "").endswith(f"_hiera_{short}.yaml")


def segmenter(settings: ServerSettings, family: str, version: str | None) -> str:
    """The model name for a ``sam`` or ``sam2`` request with ``version`` (or none)."""
    specs = _candidates(settings, family)
    if version is None:
        if settings.models and len(specs) == 1:
            return specs[0].name
        version = _DEFAULT[family]
    found = [s for s in specs if _matches(s, family, version)]
    found.sort(key=lambda s: "sam2.1" not in (s.config or ""))  # 2.1 first
    if not found:
        served = ", ".join(s.name for s in specs) or "none"
        field = "sam_version_id" if family == "sam" else "sam2_version_id"
        raise ModelUnavailable(f"{field} {version!r}: no such model is served here "
                               f"(served {family} models: {served})")
    return found[0].name


def any_segmenter(settings: ServerSettings, version: str | None) -> str:
    """A SAM 2 model if one is served, else SAM, else any segmenter (Segmind, text)."""
    for family in ("sam2", "sam"):
        if _candidates(settings, family) and (version is not None or settings.models):
            try:
                return segmenter(settings, family, version)
            except ModelUnavailable:
                continue
    others = [s for s in _candidates(settings, kind="segmenter")]
    if settings.models and others:
        return others[0].name
    return segmenter(settings, "sam2", version)


def detector(settings: ServerSettings, name: str | None) -> str:
    """The text detector: ``name`` or the first served (``groundingdino_swint_ogc``)."""
    specs = _candidates(settings, kind=DETECTOR)
    if name is not None:
        if any(s.name == name for s in specs):
            return name
        raise ModelUnavailable(f"detector {name!r} is not served here")
    if not specs:
        raise ModelUnavailable("no text detector is served here "
                               "(start the server with --model groundingdino_swint_ogc)")
    return specs[0].name
