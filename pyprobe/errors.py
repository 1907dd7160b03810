"""pyprobe's exceptions. Each carries a one-line message fit to show the operator as is."""


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
