"""The documentation stays true to the code: docs/cli.md names every command and option of `fer-annotate` and
`fer-train` and no option that does not exist; the README stays short and its links resolve; README and
docs state things as they stand (no history: that goes to CHANGELOG.md)."""

import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
HEADING = re.compile(r"^#{1,6} (.*)$", re.MULTILINE)
COMMAND_IN_HEADING = re.compile(r"`((?:fer-annotate|fer-train)(?: [a-z-]+)*)`")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
HISTORY = re.compile(r"\b(was|previously|re-measured|remeasured|used to|before this|no longer|formerly)\b",
                     re.IGNORECASE)


def command_tree(name: str, command: click.Command) -> dict[str, click.Command]:
    """Every command by its full name ('fer-annotate weights pull'), groups included."""
    tree = {name: command}
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            tree |= command_tree(f"{name} {sub_name}", sub)
    return tree


@pytest.fixture(scope="module")
def commands() -> dict[str, click.Command]:
    from fer_annotate.cli.main import main as fer_annotate
    from training.cli import main as fer_train

    return command_tree("fer-annotate", fer_annotate) | command_tree("fer-train", fer_train)


def options(command: click.Command) -> set[str]:
    """The option strings of a command (short and long, --no-x forms too), without --help/-h."""
    found = {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    return found - {"--help", "-h"}


def sections(text: str) -> dict[str, str]:
    """The text under each heading of cli.md that names commands, joined per command it names."""
    parts: dict[str, str] = {}
    marks = list(HEADING.finditer(text))
    for k, mark in enumerate(marks):
        body = text[mark.end(): marks[k + 1].start() if k + 1 < len(marks) else len(text)]
        for name in COMMAND_IN_HEADING.findall(mark.group(1)):
            parts[name] = parts.get(name, "") + body
    return parts


def test_every_command_has_a_section(commands):
    documented = sections(CLI_MD.read_text())
    missing = sorted(set(commands) - set(documented))
    assert not missing, f"docs/cli.md has no section (a heading naming `COMMAND`) for: {missing}"


def test_every_option_is_documented_under_its_command(commands):
    documented = sections(CLI_MD.read_text())
    missing = []
    for name, command in commands.items():
        body = documented.get(name, "")
        missing += [f"{name} {o}" for o in sorted(options(command))
                    if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", body)]
    assert not missing, "options missing from their command's section of docs/cli.md:\n" + "\n".join(missing)


def test_cli_md_names_no_option_that_does_not_exist(commands):
    known = {o for command in commands.values() for o in options(command)} | {"--help"}
    named = set(LONG_OPTION.findall(CLI_MD.read_text()))
    assert not named - known, f"docs/cli.md names options no command has: {sorted(named - known)}"


def test_the_checks_catch_a_missing_and_an_invented_option(commands):
    """The section parser sees a table row, and an option only in another section does not count."""
    text = "## `fer-annotate plot`\n| `--dpi` | x |\n## `fer-annotate summary`\n| `--json` | y |\n"
    parts = sections(text)
    assert "--dpi" in parts["fer-annotate plot"] and "--dpi" not in parts["fer-annotate summary"]
    assert "--invented" in set(LONG_OPTION.findall("use `--invented` here")) - options(commands["fer-annotate plot"])


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, f"README.md has {len(text.splitlines())} lines (at most 250)"
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]
    assert any(link.startswith("docs/") for link in local), "README.md links to no page of docs/"
    broken = [link for link in links if not re.match(r"[a-z]+:", link) and not resolves(ROOT / "README.md", link)]
    assert not broken, f"README.md links to missing files or headings: {broken}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def resolves(page: Path, link: str) -> bool:
    """A relative link from `page` names an existing file and, after '#', one of its headings."""
    target, _, anchor = link.partition("#")
    path = (page.parent / target) if target else page
    if not path.exists():
        return False
    if not anchor or path.suffix != ".md":
        return True
    return anchor in {slug(h) for h in HEADING.findall(path.read_text())}


def test_docs_links_resolve():
    broken = [f"{page.name}: {link}" for page in sorted((ROOT / "docs").glob("*.md"))
              for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
              if not re.match(r"[a-z]+:", link) and not resolves(page, link)]
    assert not broken, "links to missing files or headings:\n" + "\n".join(broken)


def test_slugs_follow_github():
    assert slug("Training options: `fer-train teacher`, `fer-train student`") == \
        "training-options-fer-train-teacher-fer-train-student"
    assert slug("A bundle on FER2013's own labels") == "a-bundle-on-fer2013s-own-labels"


def test_the_ci_script_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in readme and "python -m pytest -q" in ci
    assert 'pip install -e ".[dev]"' in readme and 'pip install -e ".[dev]"' in ci


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                     for p in (ROOT / "docs").glob("*.md"))])
def test_no_history_in_readme_and_docs(page):
    """Figures and behaviour as they stand; what changed and when belongs in CHANGELOG.md."""
    text = (ROOT / page).read_text()
    hits = [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}" for m in HISTORY.finditer(text)]
    assert not hits, f"{page}: history words (move the history to CHANGELOG.md):\n" + "\n".join(hits)
