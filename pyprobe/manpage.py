"""The manual pages pyprobe(8), pyprobe-generate(8) and pyprobe-ctl(8), made from what each
command's --help is made of, so that a page cannot say other than the command does.

    python -m pyprobe.manpage [probe|generate|ctl]    one page, as roff, on standard output
    python -m pyprobe.manpage --write DIR             every page into DIR (make man, make deb)

OPTIONS lists every action of the command's argparse parser (probe's and generate's are built
from the option table, settings.OPTIONS, and grouped here by its sections; ctl's is its own),
with the help --help shows. Each block of the --help epilog becomes a section of its own:
prose is filled, 'TERM  text' rows and terms with their text indented below become tagged
paragraphs, TOML examples stay as they are.
"""

import argparse
import os
import re
import sys

from . import __version__, ctl, settings
from . import help as probe_help
from .generate import help as generate_help

SECTION = 8
PAGES = {"probe": "pyprobe", "generate": "pyprobe-generate", "ctl": "pyprobe-ctl"}
SUMMARIES = {
    "probe": "meter IP traffic into NetFlow/IPFIX flow records, like a router's NetFlow",
    "generate": "make synthetic NetFlow/IPFIX flow records, or their packets, for testing collectors",
    "ctl": "ask a running pyprobe for its statistics and flows, or tell it what to do",
}
# The OPTIONS subsections: an option's key is its TOML section where that names one apart
# (replay, generate), else its --help group; argparse's own -h and --version go to output.
OPTION_HEADINGS = {
    "probe": {"probe": "Capture and metering", "replay": "Replaying capture files", "export": "Export",
              "output": "Output"},
    "generate": {"generate": "Records", "probe": "Configuration, timeouts and sampling", "export": "Export",
                 "output": "Output"},
    "ctl": {None: None},
}
# Where the Debian package puts them (contrib/pyprobe.service runs pyprobe with these).
CONFIG_FILE = "/etc/pyprobe/pyprobe.toml"
CONTROL_SOCKET = "/run/pyprobe/ctl"
UNIT_FILE = "/lib/systemd/system/pyprobe.service"
README = "/usr/share/doc/pyprobe/README.md"
SEE_ALSO = {
    "probe": ("pyprobe-generate 8", "pyprobe-ctl 8", "softflowd 8", "softflowctl 8", "nfcapd 1", "nfdump 1",
              "pmacct 1", "tshark 1", "pcap-filter 7", "systemctl 1"),
    "generate": ("pyprobe 8", "pyprobe-ctl 8", "nfcapd 1", "nfdump 1", "pmacct 1", "tshark 1"),
    "ctl": ("pyprobe 8", "pyprobe-generate 8", "softflowctl 8"),
}

# -- roff ---------------------------------------------------------------------------------------

# Typed as written: ASCII quotes and minus signs, not typographic ones.
_ESCAPES = {"\\": "\\e", "-": "\\-", "'": "\\(aq", "`": "\\(ga", "~": "\\(ti", "^": "\\(ha"}
_SPECIAL = re.compile(r"[\\\-'`~^]")
# `code` spans, and flags named in prose (not the hyphens inside words or numbers)
_EMPHASIS = re.compile(r"`([^`]+)`|(?<![\w\-/.=\[])(--?[A-Za-z][\w-]*)")


def escape(text):
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group()], text)


def bold(text):
    return f"\\fB{escape(text)}\\fR"


def italic(text):
    return f"\\fI{escape(text)}\\fR"


def prose(text):
    """Running text: flags and `code` in bold."""
    pieces, start = [], 0
    for match in _EMPHASIS.finditer(text):
        pieces += [escape(text[start:match.start()]), bold(match.group(1) or match.group(2))]
        start = match.end()
    return text_line("".join(pieces) + escape(text[start:]))


def text_line(roff):
    """A line of text that roff cannot take for a request (a leading . or ')."""
    return "\\&" + roff if roff.startswith((".", "'")) else roff


def tagged(tag, text):
    return [".TP", tag, text]


# -- OPTIONS, from the parser --------------------------------------------------------------------

def parser_of(command):
    return ctl.build_parser() if command == "ctl" else settings.build_parser(command)


def heading_key(command, action):
    if command == "ctl":
        return None
    option = settings.BY_NAME.get(action.dest)
    if option is None or set(option.flags) != set(action.option_strings):     # (--version is not -v)
        return "output"
    return option.section if option.section in ("replay", "generate") else option.group


def metavar(action):
    if action.metavar:
        return action.metavar
    if action.choices:
        return "{" + ",".join(action.choices) + "}"
    return action.dest.upper()


def arguments(action):
    """What follows a flag, as argparse's usage writes it."""
    name = italic(metavar(action))
    return {0: "", "?": f" [{name}]", "+": f" {name} [{name} ...]", "*": f" [{name} ...]"}.get(
        action.nargs, f" {name}")


def option_tag(action):
    if not action.option_strings:
        return arguments(action).strip()
    return ", ".join(bold(flag) + arguments(action) for flag in action.option_strings)


def options_section(command):
    headings = OPTION_HEADINGS[command]
    grouped = {key: [] for key in headings}
    for action in parser_of(command)._actions:
        grouped[heading_key(command, action)] += tagged(option_tag(action), prose(action.help))
    lines = [".SH OPTIONS"]
    for key, heading in headings.items():
        lines += ([f".SS {heading}"] if heading else []) + grouped[key]
    return lines


# -- sections from the --help epilog -------------------------------------------------------------

_CELL_GAP = re.compile(r" {2,}")
_TOML = re.compile(r"^\[|\s=\s")
_TITLE = re.compile(r"[a-z][a-z ]*[a-z]")
CODE_WIDTH = 64


def epilog_sections(epilog):
    """{HEADING: roff lines} of the epilog's blocks: a line at the margin starts one (its words
    up to the first bracket or colon name it; the rest of it, if any, is its first sentence)."""
    blocks = []
    for line in epilog.splitlines():
        if line and not line[0].isspace():
            blocks.append((line, []))
        elif blocks:
            blocks[-1][1].append(line)
    sections = {}
    for title, lines in blocks:
        heading = _TITLE.match(title).group().upper()
        if heading == "EXAMPLES":
            sections[heading] = [row for line in lines if line.strip() for row in example(line)]
            continue
        lead = [] if title.rstrip(":").upper() == heading else ["  " + title[0].upper() + title[1:]]
        sections[heading] = body(lead + lines)
    return sections


def example(command):
    """A command line; one too long for the page goes on under itself, indented, never
    parting a flag from its value (nor > from its file)."""
    words = command.split()
    text = escape(words[0])
    for before, word in zip(words, words[1:]):
        binds = (before.startswith("-") and not (word.startswith("-") and len(word) > 1)) or before in (">", "|")
        text += ("\\ " if binds else " ") + escape(word)
    return [".PP", ".in +4n", ".ti -4n", text_line(text), ".in"]


def body(lines):
    """A block's indented lines as roff paragraphs (see the module's help)."""
    rows = [(len(line) - len(line.lstrip()), line) for line in lines if line.strip()]
    out, words = [], []
    i = 0
    while i < len(rows):
        indent, line = rows[i]
        end = i + 1
        while end < len(rows) and rows[end][0] > indent:
            end += 1
        below = rows[i + 1:end]
        cells = _CELL_GAP.split(line.strip())
        if len(cells) > 1:
            out += paragraph(words) + row_items(cells, below)
        elif below and (words or _TOML.search(below[0][1].strip())):
            words.append(line.strip())
            out += paragraph(words) + indented(below)
        elif below:
            out += paragraph(words) + hanging(line, below)
        else:
            words.append(line.strip())
            if line.endswith(":"):
                out += paragraph(words)
        i = end
    return out + paragraph(words)


def paragraph(words):
    """The prose gathered so far as one paragraph (emptying the list)."""
    text = " ".join(words)
    words.clear()
    return [".PP", prose(text)] if text else []


def joined(rows):
    return " ".join(line.strip() for _, line in rows)


def row_items(cells, below):
    """'TERM  text' (or two such pairs on one line); lines indented below go on the last text."""
    pairs = list(zip(cells[::2], cells[1::2])) if len(cells) % 2 == 0 else [(cells[0], " ".join(cells[1:]))]
    if below:
        pairs[-1] = (pairs[-1][0], pairs[-1][1] + " " + joined(below))
    return [line for term, text in pairs for line in tagged(bold(term), prose(text))]


def hanging(line, below):
    """A term with its text indented below it; the text may start on the term's line, in the
    column the lines below keep."""
    column = below[0][0]
    if len(line) > column and line[column - 1] == " " and line[column] != " ":
        term, text = line[:column].strip(), line[column:].strip() + " " + joined(below)
    else:
        term, text = line.strip(), joined(below)
    return tagged(bold(term), prose(text))


def indented(rows):
    """Lines indented under a paragraph: TOML as it is (long arrays wrapped), else filled text."""
    if not _TOML.search(rows[0][1].strip()):
        return [".RS", prose(joined(rows)), ".RE"]
    margin = rows[0][0]
    code = [wrapped for indent, line in rows for wrapped in wrap_code(" " * (indent - margin) + line.strip())]
    return [".RS", ".sp", ".nf"] + [text_line(escape(line)) for line in code] + [".fi", ".RE"]


def wrap_code(line):
    """A TOML line longer than CODE_WIDTH: its array, one element after another, continued
    under its first element (TOML arrays may span lines)."""
    opening = line.find("[", line.find("="))
    if len(line) <= CODE_WIDTH or "=" not in line or opening < 0:
        return [line]
    lines, current = [], line[:opening + 1]
    for element in line[opening + 1:].split(", "):
        if len(current) + len(element) > CODE_WIDTH and not current.endswith("["):
            lines.append(current.rstrip())
            current = " " * (opening + 1)
        current += element + ", "
    return lines + [current[:-2]]


# -- the pages -----------------------------------------------------------------------------------

def synopsis(command):
    option = f"[{italic('option')} ...]"
    read, interface, bpf = (settings.BY_NAME[name].metavar for name in ("read", "interface", "filter"))
    ctl_line = ("pyprobe ctl", f"{bold('-c')} {italic('PATH')} {option} {italic('COMMAND')} [{italic('ARG')} ...]")
    lines = {
        "probe": [("pyprobe", f"{option} {bold('-r')} {italic(read)} ... [{italic(bpf)}]"),
                  ("pyprobe", f"{option} {bold('-i')} {italic(interface)} ... [{italic(bpf)}]"),
                  ("pyprobe", f"{bold('-f')} {italic('FILE')} {option}"),
                  ("pyprobe generate", option), ctl_line],
        "generate": [("pyprobe generate", option)],
        "ctl": [ctl_line],
    }[command]
    return [".SH SYNOPSIS"] + [row for name, rest in lines for row in (f'.SY "{name}"', rest, ".YS")]


def description(command):
    text = {"probe": probe_help.DESCRIPTION, "generate": generate_help.DESCRIPTION, "ctl": ctl.DESCRIPTION}[command]
    lines = [".SH DESCRIPTION"]
    for piece in text.split("\n\n"):
        lines += [".PP", prose(" ".join(piece.split()))]
    return lines


def signals_section():
    return [".SH SIGNALS"] + [line for name, text in (
        ("SIGTERM, SIGINT", "Stop capturing (taking what the kernel's capture buffers still hold), expire "
                            "and export every flow, write the statistics and exit 0."),
        ("SIGHUP", "Read the configuration file (-f) again: new timeouts and collectors apply, the flow "
                   "cache is kept (systemctl reload pyprobe)."),
        ("SIGUSR1", "Send the v9 and IPFIX templates to the collectors now."),
    ) for line in tagged(bold(name), prose(text))]


def files_section(command):
    files = {
        CONFIG_FILE: f"The configuration of the pyprobe service (TOML, see CONFIG FILE in pyprobe(8)): "
                     f"where to capture and where to send the records.",
        CONTROL_SOCKET: f"The service's control socket: `pyprobe ctl -c {CONTROL_SOCKET} statistics`.",
        UNIT_FILE: f"The service: `pyprobe -f {CONFIG_FILE} -c {CONTROL_SOCKET} --syslog -q` as user "
                   "pyprobe, with only the capabilities CAP_NET_RAW and CAP_NET_ADMIN. "
                   "`systemctl enable --now pyprobe` starts it now and at every boot.",
        README: "How flows are made, the guarantees, replaying, generating, export and performance.",
    }
    shown = (CONTROL_SOCKET, README) if command == "ctl" else tuple(files)
    return [".SH FILES", ".PP", "As the Debian package installs them:"] + [
        line for path in shown for line in tagged(bold(path), prose(files[path]))]


def see_also(command):
    pages = [f"{bold(name)}({section})" for name, section in (ref.split() for ref in SEE_ALSO[command])]
    return [".SH SEE ALSO", ",\n".join(pages)]


def page(command):
    name = PAGES[command]
    sections = epilog_sections(parser_of(command).epilog)
    tail = [sections.pop(heading, []) for heading in ("EXIT STATUS", "EXAMPLES")]
    lines = [f'.TH {name.upper()} {SECTION} "" "pyprobe {__version__}" "System Manager\'s Manual"',
             ".\\\" Made by python -m pyprobe.manpage from the tables of pyprobe --help: edit those.",
             ".nr HY 0", ".nh", ".ad l",      # no hyphen added to a flag or a word

             ".SH NAME", f"{escape(name)} \\- {escape(SUMMARIES[command])}"]
    lines += synopsis(command) + description(command) + options_section(command)
    for heading, section in sections.items():
        lines += [f".SH {heading}"] + section
    if command == "probe":
        lines += signals_section()
    if command in ("probe", "ctl"):
        lines += files_section(command)
    for heading, section in zip(("EXIT STATUS", "EXAMPLES"), tail):
        lines += [f".SH {heading}"] + section if section else []
    return "\n".join(lines + see_also(command)) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pyprobe.manpage",
                                     description="Print a manual page of pyprobe as roff, or write them all.")
    parser.add_argument("command", nargs="?", choices=PAGES, default="probe", help="whose page (default probe)")
    parser.add_argument("--write", metavar="DIR", help=f"write every page into DIR as NAME.{SECTION}")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(page(args.command))
        return 0
    os.makedirs(args.write, exist_ok=True)
    for command, name in PAGES.items():
        with open(os.path.join(args.write, f"{name}.{SECTION}"), "w", encoding="utf-8") as f:
            f.write(page(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
