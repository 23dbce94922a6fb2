"""Every aspect word a capability table accepts passes the checks, the metadata and the emulator.

Issue 12 finding 19: JimmyAI's ``aspect_ratio: landscape`` (README-documented) made the
``matches_request`` check split "landscape" on ":" and raise inside the materialize step, after
the video and its sidecar were stored; the key went back to ``ready`` and was tried every tick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.pipeline.checks import CHECK_MATCHES_REQUEST, CHECK_PLAYS, evaluate_checks
from omni_assets.pipeline.media import VideoProbe
from omni_assets.providers.capabilities import CAPABILITIES
from omni_assets.registry import RecordState
from omni_assets.request import VideoRequest

from .pipeline_env import PipelineEnv, pipeline_env

# Every (provider, model, aspect word) the tables accept: ratios and orientation words.
WORDS = [
    (caps.provider, caps.model, word)
    for table in CAPABILITIES.values()
    for caps in table.values()
    for word in (*caps.aspect_ratios, *caps.orientations)
]


def _probe(ratio: str) -> VideoProbe:
    w, h = (int(n) for n in ratio.split(":"))
    return VideoProbe(
        duration_s=6.0,
        width=w * 80,
        height=h * 80,
        video_codec="h264",
        audio_codec="aac",
        fps=24.0,
        size=1000,
        frames=144,
        indexed_frames=144,
    )


def test_the_tables_have_orientation_words() -> None:
    assert ("jimmyai", "Gemini-Omini", "landscape") in WORDS
    assert ("jimmyai", "omni-10s", "portrait") in WORDS


@pytest.mark.parametrize(("provider", "model", "word"), WORDS)
def test_every_accepted_aspect_word_passes_the_checks(provider: str, model: str, word: str) -> None:
    caps = CAPABILITIES[provider][model]
    request = VideoRequest(prompt="x", provider=provider, model=model, aspect_ratio=word)
    ratio = caps.ratio_of(word)
    outcomes = {
        o.name: o
        for o in evaluate_checks(request, _probe(ratio), expected_duration=6, expected_aspect=ratio)
    }
    assert outcomes[CHECK_PLAYS].passed
    matches = outcomes[CHECK_MATCHES_REQUEST]
    assert matches.passed, matches.description
    # And the other orientation is caught, not passed.
    flipped = ":".join(reversed(ratio.split(":")))
    wrong = evaluate_checks(request, _probe(flipped), expected_aspect=ratio)
    assert not wrong[1].passed and word in wrong[1].description


def test_an_unreadable_aspect_fails_the_check_instead_of_raising() -> None:
    request = VideoRequest(prompt="x", aspect_ratio="landscape")
    outcomes = evaluate_checks(request, _probe("16:9"))  # no table said what it means
    assert not outcomes[1].passed
    assert "not a W:H ratio" in outcomes[1].description


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Any:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        yield e


def test_jimmyai_orientation_words_materialize_through_the_emulator(env: PipelineEnv) -> None:
    requests = [
        {"id": f"jimmy-{word}", "prompt": "a fox", "provider": "jimmyai", "aspect_ratio": word}
        for word in ("landscape", "portrait")
    ]
    requests.append(
        {"id": "ten-portrait", "prompt": "a fox", "provider": "jimmyai", "model": "omni-10s"}
        | {"aspect_ratio": "portrait"}
    )
    env.write_requests(requests)
    driver = LocalDriver(env.defs, env.instance, env.registry)
    result = driver.drive(timeout_s=120, interval_s=0.3)
    states = {r.key: r.state for r in result.records}
    assert states == dict.fromkeys(states, RecordState.MATERIALIZED), states
    runs = [r for r in env.instance.get_runs() if r.job_name == "omni_materialize"]
    assert all(r.is_success for r in runs)  # nothing raised after a download
    evaluations = {
        (ev.partition, ev.check_name): ev
        for run in runs
        for e in env.instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        for ev in [e.dagster_event.event_specific_data]
    }
    for key, ratio in (("jimmy-landscape", "16:9"), ("jimmy-portrait", "9:16")):
        matches = evaluations[(key, CHECK_MATCHES_REQUEST)]
        assert matches.passed
        word = key.split("-")[1]
        assert matches.metadata["requested_aspect_ratio"].value == f"{word} ({ratio})"
        (event,) = [
            r
            for r in env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=10).records
            if r.partition_key == key
        ]
        w, h = map(int, event.asset_materialization.metadata["resolution"].value.split("x"))
        assert (w > h) == (ratio == "16:9")  # the emulator rendered what the word means
    assert evaluations[("ten-portrait", CHECK_MATCHES_REQUEST)].passed
