"""The option table's checks: every wrong value, in a flag or in the config file, is one
line naming the option, exit 2; never a traceback, never a value silently bent."""

from pathlib import Path

import pytest

import wire

ANDROID = str(Path(__file__).resolve().parent.parent / "pcaps" / "android.pcap")


def one_line_error(proc, naming):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyprobe"), proc.stderr
    assert naming in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("section,line,naming", [
    ("probe", 'tracking = ["full"]', "tracking"), ("probe", "max_flows = 1.5", "max_flows"),
    ("probe", "filter = 5", "filter"), ("probe", "interface = 5", "interface"),
    ("probe", 'snaplen = "1_000"', "snaplen"), ("export", 'round_robin = "no"', "round_robin"),
    ("export", "template_interval = 1e300", "template_interval"), ("timeouts", "inactive = 1e30", "[timeouts]"),
    ("timeouts", 'bogus = 5', "[timeouts]"), ("collector", "version = 9", "address"),
    ("collector", "address = 5", "[[collector]]")])
def test_wrong_config_values_name_the_key(tmp_path, section, line, naming):
    header = f"[[{section}]]" if section == "collector" else f"[{section}]"
    cfg = tmp_path / "probe.toml"
    cfg.write_text(f'[probe]\nread = "{ANDROID}"\n' if section != "probe" else "")
    cfg.write_text(cfg.read_text() + (f'{header}\nread = "{ANDROID}"\n{line}\n' if section == "probe"
                                      else f"{header}\n{line}\n"))
    one_line_error(wire.run_pyprobe(["-f", str(cfg), "-q"], check_exit=None), naming)


@pytest.mark.parametrize("flag,value", [("-m", "1_000"), ("-m", " 5"), ("-m", "1.5"), ("-s", "0x10"),
                                        ("-t", "inactive=99999999999999999999"), ("-t", "maxlife=1e300"),
                                        ("-t", "tcp.rst=99999999999999999999"),
                                        ("--template-interval", "1e400")])
def test_flag_values_are_taken_as_written_or_refused(flag, value):
    one_line_error(wire.run_pyprobe(["-r", ANDROID, flag, value, "-q"], check_exit=None), flag)


@pytest.mark.parametrize("address", ["255.255.255.255:9", "[fe80::1]:9", "[ff02::1]:9"])
def test_collectors_that_cannot_be_sent_to(address):
    one_line_error(wire.run_pyprobe(["-r", ANDROID, "-n", address, "-q"], check_exit=None), address)


@pytest.mark.parametrize("timeout", ["-1", "nan", "inf", "0"])
def test_ctl_timeout_must_be_positive_and_finite(tmp_path, timeout):
    proc = wire.run_pyprobe(["ctl", "-c", str(tmp_path / "none.sock"), f"--timeout={timeout}", "statistics"],
                            check_exit=None)
    assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr


def test_interfaces_from_flags_and_the_config_file(tmp_path):
    from pyprobe.settings import parse
    from pyprobe.source.interfaces import InterfaceSpec
    assert parse(["-i", "any", "-i", "5:eth0"]).interface == (InterfaceSpec("any"), InterfaceSpec("eth0", 5))
    cfg = tmp_path / "probe.toml"
    cfg.write_text('[probe]\ninterface = ["eth1", "3:eth2"]\n')
    assert parse(["-f", str(cfg)]).interface == (InterfaceSpec("eth1"), InterfaceSpec("eth2", 3))
    cfg.write_text('[probe]\ninterface = "eth1"\n')
    assert parse(["-f", str(cfg)]).interface == (InterfaceSpec("eth1"),)
    assert parse(["-f", str(cfg), "-i", "eth9"]).interface == (InterfaceSpec("eth9"),)


@pytest.mark.parametrize("args,naming", [
    (["-i", "eth0", "-i", "eth0"], "eth0 is given twice"), (["-i", "3:any"], "'any'"),
    (["-i", "0:eth0"], "-i"), (["-i", "a" * 16], "-i"), (["-i", "eth0", "-r", ANDROID], "either")])
def test_bad_interfaces_are_one_line(args, naming):
    one_line_error(wire.run_pyprobe([*args, "-q"], check_exit=None), naming)


def test_the_record_has_one_name_and_its_old_one_still_works(tmp_path):
    """-T, --record, [probe] record and a [[monitor]]'s record are one setting; [probe] tracking
    is its old name."""
    from pyprobe.settings import parse
    cfg = tmp_path / "probe.toml"
    base = ["-r", ANDROID, "-f", str(cfg)]
    cfg.write_text("")
    assert parse(base + ["-T", "proto"]).record == parse(base + ["--record", "proto"]).record == "proto"
    for key in ("record", "tracking"):
        cfg.write_text(f'[probe]\n{key} = "proto"\n')
        assert parse(base).record == "proto" and parse(base).record_definition.name == "proto"
        assert parse(base + ["-T", "ip"]).record_definition.name == "ip"       # the flag beats the file
    cfg.write_text('[[monitor]]\nname = "m"\nrecord = "proto"\n')
    assert [(name, each.record) for name, each in parse(base).monitors] == [("m", "proto")]


@pytest.mark.parametrize("flags,line,message", [
    (["-T", "nonsense"], "", "-T/--record: unknown record 'nonsense'"),
    (["--record", "nonsense"], "", "-T/--record: unknown record 'nonsense'"),
    ([], 'record = "nonsense"', "[probe] record: unknown record 'nonsense'"),
    ([], 'tracking = "nonsense"', "[probe] tracking: unknown record 'nonsense'"),
    ([], "tracking = 5", "[probe] tracking: bad value 5"),
    ([], 'record = "ip"\ntracking = "ip"', "[probe] record and tracking are one setting: give one"),
])
def test_a_wrong_record_is_named_as_it_was_written(tmp_path, flags, line, message):
    from pyprobe.errors import SettingsError
    from pyprobe.settings import parse
    cfg = tmp_path / "probe.toml"
    cfg.write_text(f"[probe]\n{line}\n")
    with pytest.raises(SettingsError) as raised:
        parse(["-r", ANDROID, "-f", str(cfg)] + flags)
    assert message in str(raised.value)
