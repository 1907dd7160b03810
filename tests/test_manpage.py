"""The manual pages (pyprobe/manpage.py) against the commands: every option of the table and
of ctl's parser is an item of the right page, the page's items are --help's options, every
word of the --help epilog reaches the page, and groff formats each page without a warning."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyprobe import ctl, manpage, settings

ROOT = Path(__file__).resolve().parent.parent
PYPROBE = Path(sys.executable).parent / "pyprobe"
COMMANDS = ("probe", "generate", "ctl")
FLAG = re.compile(r"(?:^|, )(-[\w-]+)")


def render(roff):
    """The page as man shows it, in plain text (80 columns), and groff's warnings."""
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-rLL=80n", "-P-cbou"], input=roff,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def pages():
    return {command: render(manpage.page(command)) for command in COMMANDS}


def section(text, heading):
    """The lines of one section of a rendered page (headings stand at the margin)."""
    match = re.search(rf"^{heading}\n(.*?)(?=^\S)", text, re.S | re.M)
    assert match, f"no {heading} section"
    return match.group(1)


def tag_starts(text, heading="OPTIONS"):
    """The items of a section: the lines at the item indent (7 columns)."""
    return [line[7:] for line in section(text, heading).splitlines() if re.match(r" {7}\S", line)]


def is_item(tags, word):
    """word begins an item, alone or after other flags ('-q, --quiet', '-T RECORD, --record RECORD')."""
    return any(re.match(rf"(?:-\S*(?: \S+)?, )*{re.escape(word)}(?![\w-])", tag) for tag in tags)


def help_flags(command):
    """The flags of `pyprobe [command] --help`, from its option lines (before the epilog)."""
    args = [str(PYPROBE)] + ([] if command == "probe" else [command]) + ["--help"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "COLUMNS": "200"}).stdout
    epilog = manpage.parser_of(command).epilog
    options = text[:text.index(epilog.splitlines()[0])]
    invocations = [re.split(r"\s{2,}", line.strip())[0] for line in options.splitlines()
                   if re.match(r"  -", line)]
    return {flag for invocation in invocations for flag in FLAG.findall(invocation)}


@pytest.mark.parametrize("command", COMMANDS)
def test_groff_formats_the_page_without_a_warning(pages, command):
    text, warnings = pages[command]
    assert warnings == ""
    assert text.startswith(f"{manpage.PAGES[command].upper()}(8)")


@pytest.mark.parametrize("command", ["probe", "generate"])
def test_every_option_of_the_table_is_an_item_of_its_page(pages, command):
    tags = tag_starts(pages[command][0])
    rows = [o for o in settings.OPTIONS if command in o.commands]
    missing = [flag for o in rows for flag in o.flags if not is_item(tags, flag)]
    missing += [o.metavar for o in rows if not o.flags and not any(o.metavar in tag for tag in tags)]
    assert not missing, f"{manpage.PAGES[command]}(8) lacks {missing}"
    others = [o for o in settings.OPTIONS if command not in o.commands]
    assert not [flag for o in others for flag in o.flags if is_item(tags, flag)]


def test_every_ctl_option_and_command_is_an_item_of_its_page(pages):
    text = pages["ctl"][0]
    flags = [flag for action in ctl.build_parser()._actions for flag in action.option_strings]
    assert flags and all(is_item(tag_starts(text), flag) for flag in flags)
    commands = tag_starts(text, "COMMANDS")
    assert [tag.split()[0] for tag in commands] == list(ctl.COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_page_items_are_the_options_of_help(pages, command):
    tags = [tag for tag in tag_starts(pages[command][0]) if tag.startswith("-")]
    flags = help_flags(command)
    assert flags and {tag.split()[0].rstrip(",") for tag in tags} <= flags
    assert all(is_item(tags, flag) for flag in flags), sorted(f for f in flags if not is_item(tags, f))
    assert len(tags) == len([a for a in manpage.parser_of(command)._actions if a.option_strings])


@pytest.mark.parametrize("command", COMMANDS)
def test_each_option_help_is_on_the_page(pages, command):
    options = " ".join(section(pages[command][0], "OPTIONS").split())
    for action in manpage.parser_of(command)._actions:
        assert " ".join(action.help.replace("`", "").split()) in options      # (`code` is set in bold)


def words(text):
    return [word.rstrip(":") for word in text.lower().replace("`", "").split()]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_word_of_the_epilog_is_on_the_page_in_order(pages, command):
    """No line of the --help epilog is lost to the reflowing of its blocks into sections (each
    block in order; a title alone is the section's heading)."""
    blocks = re.split(r"\n(?=\S)", manpage.parser_of(command).epilog)
    assert len(blocks) >= 3
    for block in blocks:
        page_words = iter(words(pages[command][0]))
        block_words = words(block)
        for position, word in enumerate(block_words):
            assert word in page_words, f"lost at {' '.join(block_words[position:position + 8])!r}"


def test_a_new_option_row_reaches_the_page(monkeypatch):
    """The page is made from the table, not from a list of its own."""
    rows = settings.OPTIONS + (settings.Option("frobnicate", ("--frobnicate",), "replay", settings.parse_bool,
                                               False, "frob every packet twice", kind="switch"),)
    monkeypatch.setattr(settings, "OPTIONS", rows)
    monkeypatch.setattr(settings, "BY_NAME", {o.name: o for o in rows})
    text, warnings = render(manpage.page("probe"))
    assert is_item(tag_starts(text), "--frobnicate") and "frob every packet twice" in text
    assert "--frobnicate" in section(text, "OPTIONS").split("Replaying capture files")[1]


def test_the_service_uses_the_files_the_page_names():
    unit = (ROOT / "contrib" / "pyprobe.service").read_text()
    command = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    assert command[command.index("-f") + 1] == manpage.CONFIG_FILE
    assert command[command.index("-c") + 1] == manpage.CONTROL_SOCKET
    assert f"file://{manpage.README}" in unit and "man:pyprobe(8)" in unit


def test_write_makes_every_page_and_man_reads_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pyprobe.manpage", "--write", str(tmp_path)], check=True, timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.8" for name in manpage.PAGES.values())
    shown = subprocess.run(["man", "-l", str(tmp_path / "pyprobe-ctl.8")], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
    assert shown.returncode == 0 and shown.stderr == ""
    assert "send-template" in shown.stdout
