"""`--help` reads well and `--version` answers: the annotate command's options sit in topic panels, usage
errors stay one plain line, and both commands print the package's version."""

from click.testing import CliRunner

from fer_annotate import __version__
from fer_annotate.cli.main import main as fer_annotate
from training.cli import main as fer_train

PANELS = ["Input and output", "Faces", "Models", "Speed", "Scale-out"]


def test_version_of_both_commands():
    runner = CliRunner()
    for command, name in ((fer_annotate, "fer-annotate"), (fer_train, "fer-train")):
        result = runner.invoke(command, ["--version"])
        assert result.exit_code == 0 and result.output.strip() == f"{name}, version {__version__}", result.output


def test_annotate_help_groups_every_option_in_a_topic_panel():
    annotate = fer_annotate.commands["annotate"]
    panels = {panel.name: panel.options for panel in annotate.panels}
    assert list(panels) == PANELS
    in_panels = {o for options in panels.values() for o in options}
    options = {p.opts[-1] for p in annotate.params if p.param_type_name == "option" and p.name != "help"}
    assert options <= in_panels, f"options in no panel of fer_annotate/cli/main.py: {sorted(options - in_panels)}"
    assert in_panels <= options, f"panels name options that do not exist: {sorted(in_panels - options)}"
    text = CliRunner().invoke(fer_annotate, ["annotate", "--help"], terminal_width=120).output
    assert all(title in text for title in PANELS) and "--detect-every" in text


def test_usage_errors_stay_one_plain_line(tmp_path):
    result = CliRunner().invoke(fer_annotate, [str(tmp_path / "v.mp4"), "-o", str(tmp_path / "o.csv"),
                                               "--fps", "nan"])
    assert result.exit_code == 2
    assert "Error: Invalid value for '--fps': 'nan' is not a finite number." in result.output.splitlines()
    assert "╭" not in result.output and "│" not in result.output
