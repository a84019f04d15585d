"""Every CPU throughput target of fer-annotate as a figure, whole processes timed as a user meets them.

    python benchmarks/targets_benchmark.py [--repeat 3] [--video PATH] [--fast-weights NAME] [--no-ray]

Prints, with the machine and its load average before and after:

- the decode-only yardstick (decord, batches of 16) on the clip and on the clip looped 10x, each its own
  process started by /bin/sh from this script, which never imports torch (a yardstick timed as a child of
  a torch-holding process is slower and larger than the one a user starts from a shell);
- the default run and the one-network run (`--fast-weights`, default `ferplus-fast` where installed, else
  its stand-in `ferplus-teacher`) on the 10x clip, as multiples of the 10x decode-only time;
- peak RSS of the default run on the 10x clip over the clip's (ru_maxrss of the process, from wait4);
- 4 copies of the clip: `--workers 2` on two cores over `--workers 1` held to one core (taskset), and the
  default (no --workers) on the two cores;
- whether a folder annotated on Ray gives the same table bytes as one process (unless --no-ray).

The looped clip is built in a temporary folder by remuxing the clip's packets (PyAV, no re-encoding).
Cases run interleaved round by round (A B C ... A B C ...) so that other load hits them alike; medians.
"""

import argparse
import os
import resource
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_benchmark import loop_clip  # noqa: E402  (PyAV only: this process never imports torch)
from process_timing import DECODE, loadavg, timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CLIP = SHARED / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


def run_shell(command: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `command` run by /bin/sh."""
    timing = timed(["/bin/sh", "-c", command])
    return timing.wall, timing.rss_mib


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}; {len(os.sched_getaffinity(0))} cores allowed, {os.cpu_count()} in the machine"


def pick_fast(name: str | None) -> str:
    if name:
        return name
    return "ferplus-fast" if (ROOT / "weights" / "ferplus-fast" / "bundle.json").is_file() else "ferplus-teacher"


def same_tables(a: Path, b: Path) -> bool:
    tables = sorted(p.name for p in a.glob("*.csv"))
    return bool(tables) and tables == sorted(p.name for p in b.glob("*.csv")) and all(
        (a / t).read_bytes() == (b / t).read_bytes() for t in tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--fast-weights", default=None, help="the one-network bundle (default ferplus-fast, "
                                                             "else ferplus-teacher)")
    parser.add_argument("--loops", type=int, default=10)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no such video (pass --video)")
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-home"))
    os.environ["PYTHONPATH"] = str(ROOT)
    py = shlex.quote(sys.executable)
    cli = shlex.quote(str(Path(sys.executable).parent / "fer-annotate"))
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("the workers figure needs two cores")
    one, two = str(cores[0]), f"{cores[0]},{cores[1]}"
    fast = pick_fast(args.fast_weights)
    load_before = loadavg()

    with tempfile.TemporaryDirectory(prefix="fer-targets-") as tmp:
        tmp = Path(tmp)
        looped = tmp / f"looped{args.loops}x.mp4"
        loop_clip(args.video, looped, args.loops)
        copies = tmp / "copies"
        copies.mkdir()
        for k in range(4):
            (copies / f"copy{k}{args.video.suffix}").symlink_to(args.video.resolve())
        out = tmp / "out"
        clip, big = shlex.quote(str(args.video)), shlex.quote(str(looped))
        d = shlex.quote(str(out))
        cases = {
            "decode-only, clip": f"{py} -c {shlex.quote(DECODE)} {clip}",
            f"decode-only, {args.loops}x clip": f"{py} -c {shlex.quote(DECODE)} {big}",
            "default, clip": f"{cli} {clip} -o {d}/a.csv --overwrite",
            f"default, {args.loops}x clip": f"{cli} {big} -o {d}/b.csv --overwrite",
            f"--weights {fast}, {args.loops}x clip": f"{cli} {big} -o {d}/c.csv --overwrite --weights {fast}",
            "4 copies, --workers 1, taskset one core": f"taskset -c {one} {cli} {copies} -o {d}/w1 --overwrite "
                                                      f"--workers 1",
            "4 copies, --workers 2, taskset two cores": f"taskset -c {two} {cli} {copies} -o {d}/w2 --overwrite "
                                                        f"--workers 2",
            "4 copies, default, taskset two cores": f"taskset -c {two} {cli} {copies} -o {d}/w0 --overwrite",
        }
        wall: dict[str, list[float]] = {k: [] for k in cases}
        rss: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.repeat):
            for name, command in cases.items():
                seconds, peak = run_shell(command)
                wall[name].append(seconds)
                rss[name].append(peak)
            print(f"round {r + 1}/{args.repeat} done, load {loadavg()}", file=sys.stderr, flush=True)
        ray_line = "not run (--no-ray)"
        if not args.no_ray:
            pair = tmp / "pair"
            pair.mkdir()
            for k in range(2):
                (pair / f"copy{k}{args.video.suffix}").symlink_to(args.video.resolve())
            p = shlex.quote(str(pair))
            run_shell(f"{cli} {p} -o {d}/ray1 --workers 1")
            run_shell(f"{cli} {p} -o {d}/ray --ray")
            ray_line = ("byte-identical" if same_tables(out / "ray1", out / "ray")
                        else "DIFFERENT") + " (2 copies of the clip, --ray vs --workers 1)"
        workers_same = same_tables(out / "w1", out / "w2") and same_tables(out / "w1", out / "w0")
    load_after = loadavg()

    med = {k: statistics.median(v) for k, v in wall.items()}
    print(f"machine: {machine()}; load average {load_before} before, {load_after} after "
          f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")
    print(f"video {args.video.name}; {args.repeat} interleaved rounds; medians (min-max)\n")
    print(f"{'case':<44} {'wall s':>20} {'peak RSS MiB':>13}")
    for name in cases:
        w = wall[name]
        print(f"{name:<44} {med[name]:>7.2f} ({min(w):.2f}-{max(w):.2f}) {statistics.median(rss[name]):>13.0f}")
    dec = med[f"decode-only, {args.loops}x clip"]
    print("\n| figure | value | target |\n|---|---|---|")
    print(f"| default bundle, {args.loops}x clip / decode-only | {med[f'default, {args.loops}x clip'] / dec:.1f}x | "
          f"<= 12x (goal 8x) |")
    print(f"| one network ({fast}), {args.loops}x clip / decode-only | "
          f"{med[f'--weights {fast}, {args.loops}x clip'] / dec:.1f}x | <= 6x (goal 4x) |")
    ratio = statistics.median(rss[f"default, {args.loops}x clip"]) / statistics.median(rss["default, clip"])
    print(f"| peak RSS, default, {args.loops}x clip / clip | {ratio:.2f} | <= 1.3 |")
    base = med["4 copies, --workers 1, taskset one core"]
    print(f"| 4 copies: --workers 2 on 2 cores / --workers 1 on 1 core | "
          f"{med['4 copies, --workers 2, taskset two cores'] / base:.2f} | <= 0.6 (goal 0.52) |")
    print(f"| 4 copies: default on 2 cores / --workers 1 on 1 core | "
          f"{med['4 copies, default, taskset two cores'] / base:.2f} | - |")
    print(f"| tables of the 4 copies: --workers 1, 2 and default | "
          f"{'byte-identical' if workers_same else 'DIFFERENT'} | identical |")
    print(f"| Ray | {ray_line} | identical |")


if __name__ == "__main__":
    main()
