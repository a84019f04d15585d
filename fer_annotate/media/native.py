"""What native libraries (ffmpeg, dmlc, absl/TFLite) print straight to file descriptor 2, captured.

Their messages bypass Python's sys.stderr, so only redirecting the descriptor keeps them off the console;
the caller decides which captured lines still matter (a decoder's error, for one line naming the file).
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Collect what native code prints on stderr (ffmpeg/dmlc logs) so errors stay one line."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
