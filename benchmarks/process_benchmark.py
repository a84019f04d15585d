"""Whole-process timings of fer-annotate against a bare `import torch` and a decode-only process.

    python benchmarks/process_benchmark.py [--video PATH] [--repeat 5] [--threads N] [--compare OTHER_TREE]

Each case runs as a fresh Python process (what a user waits for, start-up included); the cases are
interleaved round by round so that a change in the machine's load hits all of them alike, and the
median of the rounds is reported with the wall time, user CPU time and peak RSS (from wait4) and the
load average before and after. Ratios to the decode-only and the `import torch` processes are the
figures to compare across machines. With --compare, every case also runs against another source tree
(e.g. a checkout of main) in the same rounds, and the table adds after/before ratios.
"""

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_timing import DECODE, loadavg, timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "fixtures" / "videos" / "pyfeat_WolfgangLanger_Pexels.mp4"


@dataclass
class Case:
    """One process to time: a name, its argv, and which trees it runs against."""

    name: str
    argv: list[str]
    per_tree: bool = True
    wall: dict[str, list[float]] = field(default_factory=dict)
    user: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)


def run_once(argv: list[str], tree: Path) -> tuple[float, float, float]:
    """Wall seconds, user CPU seconds and peak RSS (MiB) of one process run with `tree` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("TORCH_HOME", str(ROOT.parent / "shared" / "torch-home"))
    timing = timed(argv, env)
    return timing.wall, timing.user, timing.rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to fer-annotate")
    parser.add_argument("--weights", default=None, help="pass --weights to fer-annotate (default: its default)")
    parser.add_argument("--compare", type=Path, default=None, metavar="TREE",
                        help="another source tree (the 'before'); its fer_annotate runs in the same rounds")
    parser.add_argument("--skip-full", action="store_true", help="leave out the whole-clip run")
    args = parser.parse_args()
    if not args.video.is_file():
        sys.exit(f"{args.video}: no such video (pass --video)")

    out = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    cli = [str(Path(sys.executable).parent / "fer-annotate")]
    extra = (["--threads", str(args.threads)] if args.threads else []) + (
        ["--weights", args.weights] if args.weights else [])
    cases = [
        Case("python -c 'import torch'", [sys.executable, "-c", "import torch"], per_tree=False),
        Case("decode only (decord, batches of 16)", [sys.executable, "-c", DECODE, str(args.video)], per_tree=False),
        Case("fer-annotate CLIP --end 1", [*cli, str(args.video), "-o", str(out / "a.csv"), "--overwrite",
                                           "--end", "1", *extra]),
    ]
    if not args.skip_full:
        cases.append(Case("fer-annotate CLIP", [*cli, str(args.video), "-o", str(out / "b.csv"), "--overwrite",
                                                *extra]))
    trees = {"after": ROOT} if args.compare is None else {"before": args.compare.resolve(), "after": ROOT}
    load_before = loadavg()
    for r in range(args.repeat):
        for case in cases:
            for label, tree in (trees.items() if case.per_tree else [("after", ROOT)]):
                wall, user, rss = run_once(case.argv, tree)
                case.wall.setdefault(label, []).append(wall)
                case.user.setdefault(label, []).append(user)
                case.rss.setdefault(label, []).append(rss)
        print(f"round {r + 1}/{args.repeat} done, load {loadavg()}", file=sys.stderr)
    load_after = loadavg()

    torch_s = statistics.median(cases[0].wall["after"])
    decode_s = statistics.median(cases[1].wall["after"])
    print(f"video {args.video.name}; {args.repeat} interleaved rounds, medians (min-max); "
          f"{os.cpu_count()} CPUs; load average {load_before} before, {load_after} after")
    header = (f"{'case':<40} {'tree':<7} {'wall s':>18} {'user s':>7} {'RSS MiB':>8} "
              f"{'x decode':>9} {'x torch':>8} {'after/before':>13}")
    print(header)
    print("-" * len(header))
    for case in cases:
        for label in case.wall:
            w = case.wall[label]
            med = statistics.median(w)
            ratio = ""
            if label == "after" and "before" in case.wall:
                ratio = f"{med / statistics.median(case.wall['before']):.2f}"
            print(f"{case.name:<40} {label if case.per_tree else '-':<7} "
                  f"{med:>6.2f} ({min(w):.2f}-{max(w):.2f}) {statistics.median(case.user[label]):>7.2f} "
                  f"{statistics.median(case.rss[label]):>8.0f} {med / decode_s:>9.1f} {med / torch_s:>8.2f} "
                  f"{ratio:>13}")


if __name__ == "__main__":
    main()
