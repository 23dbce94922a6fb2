"""Property: any request is either refused before HTTP, or yields a body the emulator accepts.

The emulator encodes the provider pages on its own (it never imports the capability tables), so
agreement here means the tables and the body builders read the pages the same way it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omni_assets.emulator import EmulatorServer
from omni_assets.providers import PROVIDER_NAMES, ProviderClient, TaskRef, get_provider, wait
from omni_assets.providers.capabilities import get, models_for
from omni_assets.providers.errors import InvalidRequestError
from omni_assets.request import GenerationMode, VideoRequest

from .test_providers_support import FAST, KEY


@dataclass
class World:
    emulator: EmulatorServer
    clients: dict[tuple[str, str | None], ProviderClient]
    parent_ref: TaskRef  # a finished APIMart task (extend_from_task_id)
    video_url: str  # a finished video (reference video / extension by video URL)


@pytest.fixture(scope="module")
def world(emulator: EmulatorServer) -> World:
    emulator.reset()
    clients = {
        (p, m): get_provider(p, api_key=KEY, base_url=emulator.base_url(p), model=m, options=FAST)
        for p in PROVIDER_NAMES
        for m in (None, *models_for(p))
    }
    apimart = clients[("apimart", None)]
    ref = apimart.submit(VideoRequest(prompt="parent clip"))
    status = wait(apimart, ref, deadline=30, interval=0.1)
    return World(emulator, clients, ref, str(status.video_url))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str | None, dict[str, Any]]:
    """Half wild values, half values the capability table allows (so many get accepted)."""
    provider = draw(st.sampled_from(PROVIDER_NAMES))
    model = draw(st.sampled_from((None, *models_for(provider))))
    caps = get(provider, model)
    words = st.text(alphabet="abcdefghij klmnop", min_size=1, max_size=40)
    plausible = draw(st.booleans())

    def pick(wild: st.SearchStrategy[Any], allowed: tuple[Any, ...]) -> Any:
        if plausible:
            return draw(st.sampled_from((None, *allowed)) if allowed else st.none())
        return draw(wild)

    counts = (*caps.image_counts, *caps.frame_image_counts)
    fields = {
        "prompt": draw(words).strip() or "x",
        "duration": pick(st.none() | st.integers(1, 12), caps.durations),
        "aspect_ratio": pick(
            st.sampled_from([None, "16:9", "9:16", "1:1", "landscape", "portrait"]),
            (*caps.aspect_ratios, *caps.orientations),
        ),
        "resolution": pick(
            st.sampled_from([None, "720p", "1080p", "4k", "4K", "480p"]), caps.resolutions
        ),
        "images": [
            f"https://example.com/i{i}.png"
            for i in range(pick(st.sampled_from([0, 1, 2, 3, 5, 7, 8, 16, 17]), counts) or 0)
        ],
        "video": pick(st.sampled_from([None, "<video>"]), ("<video>",) if caps.max_videos else ()),
        "mode": pick(
            st.sampled_from([None, GenerationMode.FRAME, GenerationMode.REFERENCE]), caps.modes
        ),
        "extends": pick(st.sampled_from([None, "parent"]), ("parent",) if caps.can_extend else ()),
    }
    return provider, model, fields


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_refused_before_http_or_accepted_by_the_emulator(
    world: World, case: tuple[str, str | None, dict[str, Any]]
) -> None:
    provider, model, fields = case
    if fields["video"] == "<video>":
        fields["video"] = world.video_url
    request = VideoRequest(**fields)
    client = world.clients[(provider, model)]
    extension: dict[str, Any] = {}
    if request.extends:
        extension = {"extend_from": world.parent_ref, "video_url": world.video_url}
        if provider == "apimart" and client.capabilities(request.model).extension == "task_id":
            extension.pop("video_url")
    before = world.emulator.audit()["counts"]["requests"]
    try:
        ref = client.submit(request, **extension)
    except InvalidRequestError as exc:
        event(f"refused: {exc.field}")
        assert world.emulator.audit()["counts"]["requests"] == before  # nothing was sent
        return
    event(f"accepted by {provider}")
    assert ref.task_id  # the emulator accepted the body (any refusal would have raised)
