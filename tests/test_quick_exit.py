"""The console script's quick exit: the command's status, its output flushed, atexit handlers run."""

import subprocess
import sys

from fer_annotate import __version__

SCRIPT = """
import atexit, sys, click
from fer_annotate.cli.quick_exit import run

atexit.register(lambda: print("atexit ran", file=sys.stderr))

@click.command()
@click.argument("how")
def cmd(how):
    print("partial line without newline", end="")
    if how == "message":
        sys.exit("boom: a message")
    if how == "code":
        sys.exit(3)

run(cmd)
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, timeout=120)


def test_status_output_and_atexit_kept() -> None:
    ok = _run(SCRIPT, "ok")
    assert ok.returncode == 0 and ok.stdout == "partial line without newline" and "atexit ran" in ok.stderr
    code = _run(SCRIPT, "code")
    assert code.returncode == 3 and "atexit ran" in code.stderr
    message = _run(SCRIPT, "message")
    assert message.returncode == 1 and "boom: a message" in message.stderr and "atexit ran" in message.stderr
    usage = _run(SCRIPT)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


def test_fer_annotate_entry_point() -> None:
    version = _run("from fer_annotate.cli.main import entry; entry()", "--version")
    assert version.returncode == 0 and __version__ in version.stdout
    bad = _run("from fer_annotate.cli.main import entry; entry()", "--no-such-option")
    assert bad.returncode == 2 and "No such option" in bad.stderr
