"""Run `fer-annotate` the way a user does and read what it wrote, for the end-to-end tests.

`invoke` runs the click command in this process (one torch import for the whole session);
`run_process` starts a real process, for the checks that need the true exit code and stderr.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

FACE_COLUMNS = ["face_id", "score", "x1", "y1", "x2", "y2"]
ID_COLUMNS = ["video", "frame", "time_s", "face_id", "status", *FACE_COLUMNS[1:], "person_id"]


@dataclass
class CliResult:
    """Exit code, what was printed (stdout and stderr) and any exception that escaped the CLI."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """For assertion messages."""
        return f"exit {self.exit_code}, exception {self.exception!r}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def invoke(args: list[str]) -> CliResult:
    """`fer-annotate ARGS` through click's runner, in this process."""
    from fer_annotate.cli.main import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr, exception)


def run_process(args: list[str], timeout: float = 600) -> CliResult:
    """`fer-annotate ARGS` in a fresh Python process (the console script's entry point)."""
    code = "import sys; from fer_annotate.cli.main import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))
    return CliResult(proc.returncode, proc.stdout, proc.stderr, None)


def read_table(path: Path) -> pd.DataFrame:
    """The CSV the CLI wrote; face ids kept as strings, empty cells as missing."""
    return pd.read_csv(path, dtype={"face_id": "string", "status": "string", "video": "string"})


def sidecar(path: Path) -> Path:
    """The JSON metadata written next to an output file."""
    return path.with_name(path.name + ".json")
