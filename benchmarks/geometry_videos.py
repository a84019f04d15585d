"""Write the synthetic multi-face video used as distillation footage for the shipped students.

`group_pan` (tests/synth.py) pans and zooms over the 5-person still pyfeat_multi_face.jpg. The other
synthetic videos contain the person of pyfeat_single_face.mp4, which is held out for measuring how well
the students follow the MediaPipe teacher on faces they never saw, so they are not written here.

    python benchmarks/geometry_videos.py ../shared/fixtures/images OUT_DIR
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synth  # noqa: E402


def main() -> None:
    images, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    video = synth.group_pan(images, out / "group_pan.mp4", n_frames=300)
    print(f"{video.path}: {len(video.frames)} frames, {video.width}x{video.height}")


if __name__ == "__main__":
    main()
