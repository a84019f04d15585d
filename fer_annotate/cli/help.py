"""How the commands' help reads: rich-click renders it with the options grouped in panels, while usage errors
stay click's plain `Error: ...` line (a panel would break logs and scripts that read it)."""

from typing import Any

import click
import rich_click
from rich_click import option_panel

__all__ = ["Command", "Group", "option_panel"]


class _PlainErrors:
    """Rich help, plain errors: click's own error handling and a one-line usage before the error."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return click.Command.main(self, *args, **kwargs)  # type: ignore[arg-type]

    def get_usage(self, ctx: click.Context) -> str:
        formatter = click.HelpFormatter(width=ctx.terminal_width, max_width=ctx.max_content_width)
        click.Command.format_usage(self, ctx, formatter)  # type: ignore[arg-type]
        return formatter.getvalue().rstrip("\n")


class Command(_PlainErrors, rich_click.RichCommand):
    """A command whose help is rendered by rich-click (option panels) and whose errors are click's."""


class Group(_PlainErrors, rich_click.RichGroup):
    """A group of such commands; its subcommands and subgroups are of the same kinds."""

    command_class = Command
    group_class = type  # subgroups get this class too
