"""Pydantic request bodies, as Roboflow Inference and Segmind define them.

Routes only map these onto scheduler calls; the engines never see a request.
Fields a model does not know are kept (``extra="allow"``) so that
:func:`unknown_fields` can name them in a warning; they change nothing.
Coordinates are image pixels of the upright image.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Body(BaseModel):
    """Every request: unknown fields allowed (and warned about), ``api_key`` optional."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    api_key: str | None = None


class RequestImage(BaseModel):
    """``{type: "base64"|"url", value}``, Roboflow's ``InferenceRequestImage``."""

    model_config = ConfigDict(extra="allow")
    type: str = "base64"
    value: str | None = None


class SamEmbedRequest(Body):
    image: RequestImage | str
    image_id: str | None = None
    sam_version_id: str | None = None
    format: Literal["json", "binary"] | None = None


class SamSegmentRequest(Body):
    image: RequestImage | str | None = None
    image_id: str | None = None
    sam_version_id: str | None = None
    point_coords: list[list[float]] | None = None
    point_labels: list[float] | None = None
    mask_input: list[Any] | None = None
    has_mask_input: bool | None = None
    multimask_output: bool = False
    format: Literal["json", "binary"] = "json"


class Sam2Point(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: float
    y: float
    positive: bool = True


class Sam2Box(BaseModel):
    """Centre-anchored ``{x, y, width, height}`` (Roboflow's ``Box``) or ``{x0, y0, x1, y1}``."""

    model_config = ConfigDict(extra="allow")
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    x0: float | None = None
    y0: float | None = None
    x1: float | None = None
    y1: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> Sam2Box:
        centre = (self.x, self.y, self.width, self.height)
        corners = (self.x0, self.y0, self.x1, self.y1)
        if None in centre and None in corners:
            raise ValueError("a box needs x, y, width, height (centre-anchored) "
                             "or x0, y0, x1, y1")
        return self

    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as ``(x0, y0, x1, y1)`` pixels."""
        if None not in (self.x0, self.y0, self.x1, self.y1):
            return (self.x0, self.y0, self.x1, self.y1)  # type: ignore[return-value]
        x, y, w, h = self.x, self.y, self.width, self.height
        return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)  # type: ignore[operator]


class Sam2Prompt(BaseModel):
    """One object: an optional box plus optional points."""

    model_config = ConfigDict(extra="allow")
    box: Sam2Box | None = None
    points: list[Sam2Point] | None = None


class Sam2PromptSet(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompts: list[Sam2Prompt] | None = None


class Sam2EmbedRequest(Body):
    image: RequestImage | str
    image_id: str | None = None
    sam2_version_id: str | None = None


class Sam2SegmentRequest(Body):
    image: RequestImage | str | None = None
    image_id: str | None = None
    sam2_version_id: str | None = None
    prompts: Sam2PromptSet = Field(default_factory=Sam2PromptSet)
    multimask_output: bool = True
    mask_input: list[Any] | None = None
    save_logits_to_cache: bool = False
    load_logits_from_cache: bool = False
    format: Literal["json", "rle", "binary"] = "json"

    @field_validator("prompts", mode="before")
    @classmethod
    def _three_forms(cls, value: Any) -> Any:
        """``{prompts: [...]}``, a flat list of prompts, or one prompt dict."""
        if value is None:
            return {"prompts": []}
        if isinstance(value, list):
            return {"prompts": value}
        if isinstance(value, dict) and "prompts" not in value:
            return {"prompts": [value]}
        return value


class SegmindRequest(Body):
    """Segmind's ``/v1/sam-v2-image`` body."""

    image: str
    prompt: str | None = None
    coordinates: str | list[Any] | None = None
    remove_coordinates: str | list[Any] | None = None
    overlay_mask: bool = True
    base64: bool = False


class GroundedSamRequest(Body):
    """Text to masks: GroundingDINO boxes, then SAM 2 (or the named segmenter)."""

    image: RequestImage | str
    prompt: str
    threshold: float = 0.3
    text_threshold: float | None = None
    format: Literal["json", "rle", "binary"] = "json"
    sam2_version_id: str | None = None
    detector: str | None = None


def unknown_fields(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted names of every field ``model`` (and its nested models) did not know."""
    found = [f"{prefix}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                index = f".{i}" if isinstance(value, list) else ""
                found += unknown_fields(item, f"{prefix}{name}{index}.")
    return found
