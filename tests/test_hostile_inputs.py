"""Issue 18: what a hostile newcomer found. Each test builds the user's input and runs the CLI on it."""

import os
import stat
from pathlib import Path

import pytest
from bad_inputs import make_video
from cli_run import invoke

FAST = ["--weights", "none"]


# 18. every output gets the usual permissions under the umask --------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_output_follows_the_umask(umask: int, torch_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plot needs matplotlib")
    video = make_video(tmp_path / "v.mp4")
    table, figure, overlay = tmp_path / "o.csv", tmp_path / "o.png", tmp_path / "o.overlay.mp4"
    old = os.umask(umask)
    try:
        assert invoke([video, "-o", table, *FAST]).exit_code == 0
        assert invoke(["plot", table, "-o", figure]).exit_code == 0
        assert invoke(["render", video, table, "-o", overlay]).exit_code == 0
    finally:
        os.umask(old)
    for path in (table, figure, overlay):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o666 & ~umask, f"{path.name}: {oct(mode)} under umask {oct(umask)}"
