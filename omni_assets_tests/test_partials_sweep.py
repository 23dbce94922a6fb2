"""Temporary files of an interrupted attempt are swept by the next attempt, and only then.

Finding (issue 15, 100,000 partitions): every materialization looked for its key's leftover
``.partial-`` files, which lists the whole videos folder (fsspec's glob on a local folder; the
whole prefix on S3): 4 ms per video with 100 videos stored, 0.48 s with 10,000, 3.7 s with
50,000, for every video. Only an earlier attempt on the same key can have left one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omni_assets.cli.driver import LocalDriver
from omni_assets.providers.client import ProviderClient
from omni_assets.providers.errors import DownloadError
from omni_assets.registry import RecordState
from omni_assets.storage import VideoStorage

from .pipeline_env import PipelineEnv, pipeline_env


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Any:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        yield e


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose leftovers were looked for (each look lists the video's folder)."""
    looked: list[str] = []
    original = VideoStorage.remove_partials

    def spy(self: VideoStorage, path: str) -> list[str]:
        looked.append(path)
        return original(self, path)

    monkeypatch.setattr(VideoStorage, "remove_partials", spy)
    return looked


def _requests(env: PipelineEnv, *ids: str) -> None:
    env.write_requests(
        [{"id": i, "prompt": f"a {i}", "duration": 4} for i in ids],
        provider="apimart",
        model="Omni-Flash-Ext",
        aspect_ratio="16:9",
    )


def test_a_first_attempt_does_not_list_the_videos_folder(
    env: PipelineEnv, sweeps: list[str]
) -> None:
    _requests(env, "one", "two", "three")
    result = LocalDriver(env.defs, env.instance, env.registry).drive(timeout_s=120, interval_s=0.3)
    assert {r.state for r in result.records} == {RecordState.MATERIALIZED}
    assert sweeps == []  # before: a glob of the videos folder twice per video


def test_the_attempt_after_an_interrupted_one_removes_its_leftovers(
    env: PipelineEnv, sweeps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _requests(env, "again", "fine")
    # What a process killed mid-download leaves: a temporary sibling of the video.
    leftover = env.storage.temp_path_for(env.storage.video_path("again"))
    env.storage.fs.makedirs(leftover.rsplit("/", 1)[0], exist_ok=True)
    env.storage.fs.pipe_file(leftover, b"half a video")
    original = ProviderClient.download
    failed: list[str] = []

    def first_fails(self: ProviderClient, url: str, fs_url: str, **kwargs: Any) -> Any:
        if "again" in fs_url and not failed:
            failed.append(fs_url)
            raise DownloadError("connection reset mid-download", provider=self.name)
        return original(self, url, fs_url, **kwargs)

    monkeypatch.setattr(ProviderClient, "download", first_fails)
    result = LocalDriver(env.defs, env.instance, env.registry).drive(timeout_s=120, interval_s=0.3)
    assert {r.state for r in result.records} == {RecordState.MATERIALIZED}
    assert failed and env.registry.claims("again") == 2
    assert not env.storage.fs.exists(leftover)
    again = env.storage.video_path("again")
    assert sweeps == [again, env.storage.sidecar_path("again")]  # "fine": first attempt, no look
