"""Text that is not ours (file names, library messages) made safe for a rich console line."""

from rich.markup import escape

from fer_annotate.media.display import visible


def shown(text: object) -> str:
    """`text` as one console line: undecodable bytes and control characters spelled out (`display.visible`),
    rich markup escaped, so a name like `[red]` or `a\\nb` prints as itself on one line."""
    return escape(visible(str(text)))
