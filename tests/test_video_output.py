"""The video writer (`minidit/pipelines/video_output.py`): frame count, size and timing of the GIF and the
WebP, what round-trips exactly (lossless WebP, the PNG grid, a GIF of <= 256 colours per frame) and what
does not (a GIF of a many-coloured frame: palette rounding), read back with Pillow."""
import numpy as np
import pytest
from PIL import Image, ImageSequence

from minidit.errors import InputError
from minidit.pipelines.video_output import frame_grid, save_gif, save_video, save_webp

F, H, W = 6, 24, 40


def rich_frames(seed=0):
    """Every pixel random: thousands of colours per frame."""
    return np.random.default_rng(seed).integers(0, 256, (F, H, W, 3), dtype=np.uint8)


def few_colour_frames(seed=0):
    """64 colours per frame (4 levels per channel), different in each frame."""
    levels = np.random.default_rng(seed).integers(0, 4, (F, H, W, 3))
    return (levels * 60 + np.arange(F)[:, None, None, None]).astype(np.uint8)


def read_back(path):
    """(frames (F, H, W, 3) uint8, per-frame durations in ms) as Pillow reads the file."""
    im = Image.open(path)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(im):
        frames.append(np.asarray(frame.convert("RGB")))
        durations.append(frame.info.get("duration"))
    return np.stack(frames), durations


@pytest.mark.parametrize("frames", [rich_frames(), few_colour_frames()], ids=["rich", "64-colours"])
def test_lossless_webp_is_exact(tmp_path, frames):
    path = save_webp([Image.fromarray(f) for f in frames], tmp_path / "v.webp", fps=8)
    back, durations = read_back(path)
    assert back.shape == (F, H, W, 3) and Image.open(path).n_frames == F
    assert np.array_equal(back, frames)
    assert durations == [125] * F                                   # WebP stores milliseconds


def test_gif_is_exact_up_to_256_colours_per_frame(tmp_path):
    frames = few_colour_frames()
    back, durations = read_back(save_gif(list(frames), tmp_path / "v.gif"))    # a uint8 array works too
    assert back.shape == (F, H, W, 3) and np.array_equal(back, frames)
    assert durations == [120] * F                                   # 125 ms stored in 1/100 s: 12


def test_gif_rounds_a_many_coloured_frame_to_its_palette(tmp_path):
    frames = rich_frames()
    back, _ = read_back(save_gif(frames, tmp_path / "v.gif"))
    assert back.shape == frames.shape
    err = np.abs(back.astype(int) - frames)
    assert err.max() > 0                                            # not exact: 256 colours per frame
    assert err.mean() < 16                                          # but close (measured: 9.9 on random pixels)
    for f in range(F):                                              # each frame has at most 256 colours
        assert len(np.unique(back[f].reshape(-1, 3), axis=0)) <= 256


def test_repeated_frames_are_merged_by_both_writers(tmp_path):
    frames = rich_frames()
    video = [frames[0], frames[0], frames[1]]                       # frame 1 repeats frame 0
    for save, name in ((save_gif, "v.gif"), (save_webp, "v.webp")):
        path = save(np.stack(video), tmp_path / name)
        back, durations = read_back(path)
        assert len(back) == 2, name                                 # merged into one frame ...
        assert durations[0] in (240, 250), (name, durations)       # ... shown twice as long


def test_the_grid_places_frame_i_at_row_i_div_columns(tmp_path):
    frames = rich_frames()
    grid = np.asarray(Image.open(save_video(frames, tmp_path / "g.png", columns=4)))
    assert grid.shape == (2 * H, 4 * W, 3)
    for i in range(F):
        r, c = divmod(i, 4)
        assert np.array_equal(grid[r * H:(r + 1) * H, c * W:(c + 1) * W], frames[i])
    assert np.all(grid[H:, 2 * W:] == 0)                            # the two empty cells of a 2 x 4 grid
    assert frame_grid(list(frames)).size == (3 * W, 2 * H)           # default: ceil(sqrt(6)) = 3 columns


def test_save_video_chooses_by_extension(tmp_path):
    frames = few_colour_frames()
    assert Image.open(save_video(frames, tmp_path / "a.gif")).format == "GIF"
    assert Image.open(save_video(frames, tmp_path / "a.webp")).format == "WEBP"
    assert Image.open(save_video(frames, tmp_path / "a.png")).format == "PNG"


@pytest.mark.parametrize("frames,message", [
    ([], "non-empty"), (np.zeros((2, 4, 4), np.uint8), "uint8 array"), (np.zeros((2, 4, 4, 3)), "uint8 array"),
    ([Image.new("RGB", (4, 4)), Image.new("RGB", (4, 5))], "same size"),
])
def test_bad_frames_are_refused(tmp_path, frames, message):
    with pytest.raises(InputError, match=message):
        save_gif(frames, tmp_path / "x.gif")


def test_bad_fps_and_columns_are_refused(tmp_path):
    with pytest.raises(InputError, match="fps"):
        save_webp(few_colour_frames(), tmp_path / "x.webp", fps=0)
    with pytest.raises(InputError, match="columns"):
        frame_grid(few_colour_frames(), columns=0)
