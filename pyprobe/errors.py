"""pyprobe's exceptions. Each carries a one-line message fit to show the operator as is
(one_line: a path or value in it that holds a newline or other control character is
shown escaped)."""


LONGEST_LINE = 400


def one_line(text):
    """text with every character that is not printable escaped, as Python writes it ('\\n'),
    and a line past LONGEST_LINE cut in its middle (a value of 100,000 digits quoted in it)."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > LONGEST_LINE:
        text = f"{text[:LONGEST_LINE * 2 // 3]} [...] {text[-LONGEST_LINE // 4:]}"
    return text


class SettingsError(Exception):
    """Flags, config file or a requested change that cannot work: exit 2 at start,
    refused (the running settings kept) on reload or from the control socket."""


class InputError(Exception):
    """A capture that cannot be opened or read (not a capture, a link type pyprobe does
    not decode, no such interface): exit 2."""


class ControlError(Exception):
    """A control-socket request the probe refuses: the answer is an error line."""


class OutputError(Exception):
    """Standard output cannot take the records (a full disk, a closed descriptor): exit 2."""
