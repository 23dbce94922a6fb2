"""Probe and thumbnail real mp4s made here with PyAV, locally and through S3."""

from __future__ import annotations

import uuid
from fractions import Fraction
from pathlib import Path

import av
import fsspec
import numpy as np
import pytest

import omni_assets.pipeline.media as probe_module
from omni_assets.pipeline.media import (
    InvalidVideoError,
    VideoProbe,
    probe_video,
    thumbnail_frame,
)
from omni_assets.providers.errors import DownloadError
from omni_assets.storage import VideoStorage

from .servers import SeaweedS3

LOCAL = fsspec.filesystem("file")
FPS = 24


def make_mp4(
    path: Path, *, seconds: float = 2.0, size: tuple[int, int] = (320, 180), audio: bool = True
) -> Path:
    """An H.264 (+AAC) mp4 in which a red bar grows from the left edge, frame by frame."""
    width, height = size
    frames = round(seconds * FPS)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=44_100) if audio else None
        for i in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, : round(width * i / frames)] = (255, 0, 0)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            for start in range(0, round(seconds * 44_100), 1024):
                tone = np.sin(np.arange(start, start + 1024) / 20).astype(np.float32) * 0.2
                frame = av.AudioFrame.from_ndarray(
                    tone.reshape(1, -1), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts, frame.time_base = 44_100, start, Fraction(1, 44_100)
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("clips") / "clip.mp4")


def test_probe_reads_the_real_facts(clip: Path) -> None:
    probe = probe_video(LOCAL, str(clip))
    assert probe == VideoProbe(
        duration_s=pytest.approx(2.0, abs=0.1),  # type: ignore[arg-type]
        width=320,
        height=180,
        video_codec="h264",
        audio_codec="aac",
        fps=24.0,
        size=clip.stat().st_size,
        frames=48,
        indexed_frames=48,
    )
    assert probe.whole


def test_probe_video_without_audio(tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "silent.mp4", seconds=1.0, size=(128, 96), audio=False)
    probe = probe_video(LOCAL, str(clip))
    assert (probe.width, probe.height, probe.audio_codec) == (128, 96, None)
    assert probe.duration_s == pytest.approx(1.0, abs=0.1)


def test_probe_and_thumbnail_through_s3(s3_server: SeaweedS3, clip: Path) -> None:
    storage = VideoStorage(
        s3_server.url(f"probe-{uuid.uuid4().hex[:8]}"), s3_server.storage_options
    )
    path = storage.video_path("clip")
    storage.write_bytes_atomic(path, clip.read_bytes())
    local = probe_video(LOCAL, str(clip))
    assert probe_video(storage.fs, path) == local
    through_s3 = thumbnail_frame(storage.fs, path).to_ndarray()
    assert np.array_equal(through_s3, thumbnail_frame(LOCAL, str(clip)).to_ndarray())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a video at all, just some text\n" * 50, "not a video FFmpeg can read"),
        (b"", "not a video FFmpeg can read"),
    ],
)
def test_not_a_video_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(InvalidVideoError, match=message) as caught:
        probe_video(LOCAL, str(path))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, DownloadError)
    with pytest.raises(InvalidVideoError):
        thumbnail_frame(LOCAL, str(path))


def test_a_truncated_video_is_refused(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[:2000])
    with pytest.raises(InvalidVideoError):
        probe_video(LOCAL, str(path))


def test_a_video_cut_short_after_its_index_does_not_play(tmp_path: Path, clip: Path) -> None:
    """Issue 12 finding 6: the index (moov, at the front) survives, half the frames do not.

    Its first frame decodes, so a probe that stops there called it playable and ``plays`` passed.
    """
    data = clip.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) * 45 // 100])
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 48  # the index still lists every frame
    with pytest.raises(InvalidVideoError, match=r"of 48 frames"):
        probe_video(LOCAL, str(path))


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=44_100)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 44_100, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode())
    with pytest.raises(InvalidVideoError, match="no video stream \\(streams: audio\\)"):
        probe_video(LOCAL, str(path))


def test_thumbnail_is_a_small_frame_a_third_in(clip: Path) -> None:
    frame = thumbnail_frame(LOCAL, str(clip))
    assert (frame.width, frame.height) == (160, 90)
    pixels = frame.to_ndarray(format="rgb24")
    assert pixels.shape == (90, 160, 3)
    # At 1/3 of the clip the red bar covers about a third of the width.
    red_columns = int((pixels[45, :, 0] > 128).sum())
    assert 40 <= red_columns <= 64, red_columns
    assert pixels[45, 5, 0] > 200 and pixels[45, 150, 0] < 50


def test_thumbnail_width_and_position(clip: Path) -> None:
    small = thumbnail_frame(LOCAL, str(clip), width=64)
    assert (small.width, small.height) == (64, 36)
    late = thumbnail_frame(LOCAL, str(clip), width=160, at=0.9).to_ndarray(format="rgb24")
    assert int((late[45, :, 0] > 128).sum()) > 130
    with pytest.raises(ValueError):
        thumbnail_frame(LOCAL, str(clip), width=1)


def test_public_api() -> None:
    assert set(probe_module.__all__) == {
        "INLINE_MD_LIMIT",
        "InvalidVideoError",
        "VideoProbe",
        "data_uri",
        "encode_image",
        "inline_thumbnail_md",
        "probe_video",
        "thumbnail_and_preview_md",
        "thumbnail_frame",
    }
