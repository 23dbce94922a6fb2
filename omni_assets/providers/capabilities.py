"""What each provider+model accepts, as data.

One :class:`ModelCapabilities` entry per provider and model; validation (``validation.py``) and the
body builders read these tables and nothing else, so a renamed or retired model is a one-line
change here. Every limit cites the provider page it comes from (``/work/shared/seeds`` and
``providers.md``); where the pages disagree the stricter reading is used and the choice is noted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from ..request import GenerationMode
from .errors import InvalidRequestError

__all__ = [
    "CAPABILITIES",
    "DEFAULT_MODELS",
    "IMAGE_EXTENSIONS",
    "PROVIDER_NAMES",
    "VIDEO_EXTENSIONS",
    "DurationWithVideo",
    "Extension",
    "ModelCapabilities",
    "UploadSupport",
    "find",
    "get",
    "models_for",
    "resolve_model",
]

#: Every provider this package has a client for.
PROVIDER_NAMES = ("jimmyai", "apimart", "toapis", "crun", "google")

HOUR = 3600.0
DAY = 24 * HOUR

#: Image file extensions accepted for local sources when the provider states no narrower list.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif")
#: Video file extensions accepted for local reference videos.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".m4v", ".mkv", ".avi")


class Extension(str, Enum):
    """How a model continues an earlier video (``VideoRequest.extends``); None: it cannot."""

    #: APIMart ``extend_from_task_id`` (seed 001): pass the parent's TaskRef.
    TASK_ID = "task_id"
    #: The parent's video URL goes into the model's reference-video slot: pass it as video_url.
    VIDEO_URL = "video_url"
    #: Google Interactions ``previous_interaction_id``: the parent's TaskRef, edited in place.
    PREVIOUS_INTERACTION = "previous_interaction_id"

    @property
    def by_task(self) -> bool:
        """True when the provider is told about the parent by its task id (not by a video)."""
        return self is not Extension.VIDEO_URL


class DurationWithVideo(str, Enum):
    """What happens to ``duration`` when a reference video is given."""

    ALLOWED = "allowed"
    #: The provider rejects both together (JimmyAI seed 000) or silently drops the duration
    #: (CRUN, providers.md §4.2): either way a request asking for both is refused here.
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class UploadSupport:
    """The provider's own upload API for local images."""

    max_bytes: int
    extensions: tuple[str, ...]
    #: How long an uploaded file's URL stays valid, in seconds.
    url_ttl: float


@dataclass(frozen=True)
class ModelCapabilities:
    """Everything one provider+model accepts.

    ``durations`` empty means the model has no duration parameter (the request must omit it);
    ``fixed_duration``/``fixed_resolution`` mean the model always renders that and ignores the
    parameter, so only that value (or nothing) is accepted. ``image_counts`` are the allowed
    numbers of images in reference mode; ``frame_image_counts`` in frame mode (empty: no frame
    mode). ``max_refs`` bounds images + videos together where the provider counts them as one
    pool. ``wire_resolutions`` maps our lower-case spelling to the provider's.
    """

    provider: str
    model: str
    aliases: tuple[str, ...] = ()
    prompt_max: int = 20_000
    durations: tuple[int, ...] = ()
    default_duration: int | None = None
    fixed_duration: int | None = None
    duration_hint: str = ""
    resolutions: tuple[str, ...] = ("720p",)
    default_resolution: str = "720p"
    fixed_resolution: bool = False
    wire_resolutions: Mapping[str, str] = field(default_factory=dict)
    aspect_ratios: tuple[str, ...] = ("16:9", "9:16")
    default_aspect_ratio: str = "16:9"
    #: Spellings accepted in ``aspect_ratio`` and sent as the provider's ``orientation`` field.
    orientations: Mapping[str, str] = field(default_factory=dict)
    #: resolution -> the aspect ratios it is allowed with (absent: any).
    resolution_aspects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    modes: tuple[GenerationMode, ...] = (GenerationMode.REFERENCE,)
    image_counts: tuple[int, ...] = (0,)
    image_counts_with_video: tuple[int, ...] | None = None
    frame_image_counts: tuple[int, ...] = ()
    max_videos: int = 0
    max_refs: int | None = None
    duration_with_video: DurationWithVideo = DurationWithVideo.ALLOWED
    extension: Extension | None = None
    upload: UploadSupport | None = None
    #: How long a finished video's URL stays valid when the provider sends no ``expires_at``.
    video_url_ttl: float = DAY

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name and every alias."""
        return (self.model, *self.aliases)

    @property
    def can_extend(self) -> bool:
        return self.extension is not None

    @property
    def max_images(self) -> int:
        return max((*self.image_counts, *self.frame_image_counts))

    def duration_for(self, duration: int | None, *, has_video: bool) -> int | None:
        """The duration to send (the default when unset), or None when it must be omitted."""
        if self.fixed_duration is not None or not self.durations:
            return None
        if has_video and self.duration_with_video is DurationWithVideo.FORBIDDEN:
            return None
        return duration or self.default_duration

    def resolution_for(self, resolution: str | None) -> str | None:
        """The provider's spelling of the resolution to send, or None when it is fixed."""
        if self.fixed_resolution:
            return None
        chosen = resolution or self.default_resolution
        return self.wire_resolutions.get(chosen, chosen)

    def ratio_of(self, aspect_ratio: str | None) -> str:
        """The ``W:H`` ratio a request's ``aspect_ratio`` means here (``landscape`` -> ``16:9``;
        none given: the default)."""
        chosen = aspect_ratio or self.default_aspect_ratio
        return self.orientations.get(chosen, chosen)

    def aspect_field(self, aspect_ratio: str | None) -> tuple[str, str]:
        """``("orientation", "portrait")`` for an orientation word, else ``("aspect_ratio", …)``."""
        if aspect_ratio is not None and aspect_ratio in self.orientations:
            return "orientation", aspect_ratio
        return "aspect_ratio", aspect_ratio or self.default_aspect_ratio


def _counts(upto: int) -> tuple[int, ...]:
    return tuple(range(upto + 1))


# JimmyAI upload: ≤100 MB; images .jpg .jpeg .png .gif .webp .bmp .svg (providers.md §1.3).
# URL lifetime ~3 days (jimiskills references/api.md, [3P]).
_JIMMYAI_UPLOAD = UploadSupport(
    max_bytes=100 * 1024 * 1024,
    extensions=(".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg"),
    url_ttl=3 * DAY,
)
# APIMart upload: ≤20 MB, JPEG/PNG/WebP/GIF, URL valid 72 h (providers.md §2.3).
_APIMART_UPLOAD = UploadSupport(
    max_bytes=20 * 1024 * 1024, extensions=IMAGE_EXTENSIONS, url_ttl=72 * HOUR
)
# ToAPIs upload: ≤10 MB, JPEG/PNG/WebP/GIF; lifetime not documented, assume 24 h (§3.3).
_TOAPIS_UPLOAD = UploadSupport(max_bytes=10 * 1024 * 1024, extensions=IMAGE_EXTENSIONS, url_ttl=DAY)

_ENTRIES = (
    # Seed 000: 4/6/8/10 s (default 6), 720p/1080p/4k; frame = exactly 1 image, reference = 1 or
    # 3 (0 = text only); ≤1 video; duration and video_urls cannot be sent together;
    # aspect_ratio wins over orientation (landscape→16:9, portrait→9:16). Video URLs valid 3 days.
    ModelCapabilities(
        provider="jimmyai",
        model="Gemini-Omini",
        aliases=("Omni-Flash-Ext", "gemini-omni"),
        durations=(4, 6, 8, 10),
        default_duration=6,
        resolutions=("720p", "1080p", "4k"),
        orientations={"landscape": "16:9", "portrait": "9:16"},
        modes=(GenerationMode.FRAME, GenerationMode.REFERENCE),
        image_counts=(0, 1, 3),
        frame_image_counts=(1,),
        max_videos=1,
        duration_with_video=DurationWithVideo.FORBIDDEN,
        extension=Extension.VIDEO_URL,
        upload=_JIMMYAI_UPLOAD,
        video_url_ttl=3 * DAY,
    ),
    # Seed 000: omni-10s renders 10 s/720p whatever is asked ("duration and resolution in the
    # request are ignored"), so other values are refused rather than silently dropped. "Up to 7
    # reference images (image or video URLs)": images and the video share one pool of 7.
    # generation_type is documented for the standard version only.
    ModelCapabilities(
        provider="jimmyai",
        model="omni-10s",
        fixed_duration=10,
        duration_hint="omni-10s always renders 10 s; omit duration",
        fixed_resolution=True,
        orientations={"landscape": "16:9", "portrait": "9:16"},
        image_counts=_counts(7),
        max_videos=1,
        max_refs=7,
        extension=Extension.VIDEO_URL,
        upload=_JIMMYAI_UPLOAD,
        video_url_ttl=3 * DAY,
    ),
    # Seed 001: no duration parameter (3-10 s chosen by the model), 720p only, ≤16 images, ≤1
    # video, extension by extend_from_task_id (a reference video also works).
    ModelCapabilities(
        provider="apimart",
        model="gemini-omni-flash-preview",
        duration_hint="this model has no duration parameter; omit it; the model picks 3-10 s",
        image_counts=_counts(16),
        max_videos=1,
        extension=Extension.TASK_ID,
        upload=_APIMART_UPLOAD,
    ),
    # providers.md §2.1 (docs.apimart.ai omni-flash-ext): 4/6/8/10 (default 6), 720p/1080p/4k,
    # 0/1/3 images (2 → unsupported_image_count), ≤1 motion-reference video.
    ModelCapabilities(
        provider="apimart",
        model="Omni-Flash-Ext",
        durations=(4, 6, 8, 10),
        default_duration=6,
        resolutions=("720p", "1080p", "4k"),
        image_counts=(0, 1, 3),
        max_videos=1,
        extension=Extension.VIDEO_URL,
        upload=_APIMART_UPLOAD,
    ),
    # Seed 002 (the newer page says 6/10 s, 720P only, no image_urls: see providers.md §3.1):
    # 4/6/10 s (default 6); `720P` (default, upper-case on the wire) or `1080p` with 16:9 only;
    # 0, 1 or 3 images; no video input, hence no extension.
    ModelCapabilities(
        provider="toapis",
        model="gemini_omni_flash",
        durations=(4, 6, 10),
        default_duration=6,
        resolutions=("720p", "1080p"),
        wire_resolutions={"720p": "720P", "1080p": "1080p"},
        resolution_aspects={"1080p": ("16:9",)},
        image_counts=(0, 1, 3),
        upload=_TOAPIS_UPLOAD,
    ),
    # Seed 004: 6/10 s (default 6), 720P only, 16:9|9:16, text only.
    ModelCapabilities(
        provider="toapis",
        model="gemini_omni",
        durations=(6, 10),
        default_duration=6,
        wire_resolutions={"720p": "720P"},
        modes=(),
        upload=_TOAPIS_UPLOAD,
    ),
    # Seed 003 + providers.md §4.2 ([3P] schema): 4/6/8/10 (default 4, dropped when a video is
    # given), 720p/1080p/4k, ≤7 img_urls (≤5 with a video), one clip in video_list, prompt
    # ≤20 000. No upload API (§4.6). Media URL lifetime not found: assume 24 h.
    ModelCapabilities(
        provider="crun",
        model="google/gemini-omni",
        durations=(4, 6, 8, 10),
        default_duration=4,
        resolutions=("720p", "1080p", "4k"),
        image_counts=_counts(7),
        image_counts_with_video=_counts(5),
        max_videos=1,
        duration_with_video=DurationWithVideo.FORBIDDEN,
        extension=Extension.VIDEO_URL,
    ),
    # Google's own Gemini API over the Interactions API (docs/providers-google.md). The preview's
    # limits are Google's model card (docs.cloud.google.com/.../models/gemini/omni-flash-preview):
    # 16:9|9:16, 720p, ≤10 images, reference videos ≤10 s. The length goes in response_format as
    # "6s" (python-genai VideoResponseFormat.duration, a string); 3-10 s is [3P] (gmicloud,
    # pixeldojo); omitted, the model picks. Frame mode sends video_config.task image_to_video
    # (python-genai VideoConfig). Extension: previous_interaction_id edits the parent in place.
    # No upload here (local files go through presigned storage URLs, as on CRUN). File URIs
    # live 2 days (Gemini Files API page); an inline video lives as long as its interaction.
    ModelCapabilities(
        provider="google",
        model="gemini-omni-flash-preview",
        durations=tuple(range(3, 11)),
        duration_hint="3 to 10 seconds, or omit it and the model picks",
        modes=(GenerationMode.FRAME, GenerationMode.REFERENCE),
        image_counts=_counts(10),
        frame_image_counts=(1,),
        max_videos=1,
        extension=Extension.PREVIOUS_INTERACTION,
        video_url_ttl=2 * DAY,
    ),
    # GA successor [3P]: gemini-omni-1.1-flash, GA 2026-08-27 (apidog guide); the model picks
    # the length (civitai recipe: "version 1.1 chooses 3-10 seconds"); up to six images (civitai).
    ModelCapabilities(
        provider="google",
        model="gemini-omni-1.1-flash",
        duration_hint="this model picks 3-10 s itself; omit duration",
        modes=(GenerationMode.FRAME, GenerationMode.REFERENCE),
        image_counts=_counts(6),
        frame_image_counts=(1,),
        max_videos=1,
        extension=Extension.PREVIOUS_INTERACTION,
        video_url_ttl=2 * DAY,
    ),
    # [3P] gemini-omni-1.2-flash: 3-15 s, 360p/720p/1080p/4k, 16:9|9:16, ≤6 reference images,
    # follow-up edits by previousInteractionId (Vercel AI Gateway changelog; civitai recipe).
    ModelCapabilities(
        provider="google",
        model="gemini-omni-1.2-flash",
        durations=tuple(range(3, 16)),
        duration_hint="3 to 15 seconds, or omit it and the model picks",
        resolutions=("360p", "720p", "1080p", "4k"),
        modes=(GenerationMode.FRAME, GenerationMode.REFERENCE),
        image_counts=_counts(6),
        frame_image_counts=(1,),
        max_videos=1,
        extension=Extension.PREVIOUS_INTERACTION,
        video_url_ttl=2 * DAY,
    ),
)

#: provider -> canonical model name -> capabilities.
CAPABILITIES: Mapping[str, Mapping[str, ModelCapabilities]] = MappingProxyType(
    {
        name: MappingProxyType({c.model: c for c in _ENTRIES if c.provider == name})
        for name in PROVIDER_NAMES
    }
)

#: The model used when neither the request nor the client names one.
DEFAULT_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "jimmyai": "Gemini-Omini",
        "apimart": "gemini-omni-flash-preview",
        "toapis": "gemini_omni_flash",
        "crun": "google/gemini-omni",
        "google": "gemini-omni-flash-preview",
    }
)


def models_for(provider: str) -> tuple[str, ...]:
    """Every model name (canonical and aliases) a provider accepts; empty if unknown."""
    return tuple(name for caps in CAPABILITIES.get(provider, {}).values() for name in caps.names)


def find(provider: str, model: str | None = None) -> ModelCapabilities | None:
    """The capabilities for ``model`` (or the provider's default), following aliases.

    None when the provider or model is unknown (:func:`get` raises instead).
    """
    table = CAPABILITIES.get(provider)
    if table is None:
        return None
    name = model or DEFAULT_MODELS[provider]
    for caps in table.values():
        if name in caps.names:
            return caps
    # Case slips ("gemini-Omni") are forgiven; the canonical name is what goes on the wire.
    for caps in table.values():
        if name.lower() in (n.lower() for n in caps.names):
            return caps
    return None


def get(provider: str, model: str | None = None) -> ModelCapabilities:
    """Like :func:`find`, but an unknown provider or model raises InvalidRequestError."""
    if provider not in CAPABILITIES:
        raise InvalidRequestError("provider", provider, ", ".join(PROVIDER_NAMES))
    caps = find(provider, model)
    if caps is None:
        raise InvalidRequestError(
            "model", model, ", ".join(models_for(provider)), provider=provider
        )
    return caps


def resolve_model(provider: str, model: str | None = None) -> str:
    """The canonical model name (``gemini-omni`` → ``Gemini-Omini``; None → the default)."""
    return get(provider, model).model
