"""`policyc import-apparmor`: AppArmor profiles to a .policy (policyc/importers).

The fixture (tests/unit/data/apparmor/base/dnsmasq, in a small base directory) has every rule kind
the converter knows and every reason it has to leave one out; the converted rules and the
list of what is not converted are asserted exactly, with their lines. The output must pass
`policyc check`; a malformed profile is an error at file:line:col (exit 2), never a
traceback; AppArmor globs are held against an oracle of AppArmor's own pattern semantics
(parser_regex.c); and, when the cache is filled, every profile of Debian's
apparmor-profiles and apparmor-profiles-extra goes through without a crash.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path

import pytest

from policyc.cli.import_cmd import run_import
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.importers import import_apparmor
from policyc.importers import aaglob
from policyc.importers.apparmor import REASONS
from policyc.ir.glob import matcher, parse_glob, path_bytes
from policyc.ir.model import Event
from policyc.pipeline import front_end
from policyc.span import Span

DATA = Path(__file__).resolve().parent / "data" / "apparmor"
BASE = DATA / "base"
PROFILE = BASE / "dnsmasq"          # in the base directory, as in /etc/apparmor.d

PID = ("{{1,2,3,4,5,6,7,8,9},{1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9},"
       "{1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9},"
       "{1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9},"
       "{1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}"
       "{0,1,2,3,4,5,6,7,8,9},"
       "{1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}"
       "{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9},"
       "{1,2,3,4}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}"
       "{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}{0,1,2,3,4,5,6,7,8,9}}")
RW = "read, write, create, delete, rename, chmod, chown"

MINI = [   # abstractions/mini and abstractions/mini-nested, in each profile that includes them
    (2, 3, "abstractions/mini", "file", "converted", ['allow file read "/etc/ld.so.cache"'], []),
    (3, 3, "abstractions/mini", "file", "converted", ['allow file read, exec-map "/{usr/,}lib{,32,64}/**.so*"'], []),
    (4, 3, "abstractions/mini", "file", "converted", [f'allow file read owner "/proc/{PID}/maps"'], []),
    (1, 3, "abstractions/mini-nested", "file", "converted", [f'allow file {RW} "/dev/null"'], []),
    (2, 3, "abstractions/mini-nested", "file", "converted",
     ['allow file read "/usr/share/zoneinfo/**", "/usr/share/zoneinfo"'], []),
]

# (line, col, via include, kind, status, the policyc rules, reason keys (not converted, then approximations))
DNSMASQ = MINI + [
    (12, 3, None, "capability", "converted", ["allow capability net_bind_service, setuid"], []),
    (13, 3, None, "capability", "converted", ["allow capability sys_module", "allow module load"], []),
    (14, 3, None, "network", "converted", ["allow net create udp", "allow net connect, bind udp 0.0.0.0/0",
                                            "allow net create icmp", "allow net connect, bind icmp 0.0.0.0/0"], []),
    (15, 3, None, "network", "converted", ["allow net create tcp", "allow net connect, bind tcp ::/0"], []),
    (16, 3, None, "network", "not", [], ["net-netlink"]),
    (17, 3, None, "signal", "converted", ['allow signal term, hup, tstp to exe "/usr/sbin/libvirtd"'], []),
    (18, 3, None, "signal", "not", [], ["signal-receive"]),
    (19, 3, None, "signal", "approximate", ['allow signal to exe "/usr/lib/dnsmasq/helper"'], ["peer-attachment"]),
    (20, 3, None, "ptrace", "approximate", ['allow ptrace to exe "/usr/{bin,sbin}/dnsmasq"'], ["peer-attachment"]),
    (21, 3, None, "ptrace", "not", [], ["ptrace-read"]),  # readby: /proc introspection of it
    (23, 3, None, "file", "converted", ['allow file read "/etc/dnsmasq.conf"'], []),
    (24, 3, None, "file", "converted", ['allow file read "/etc/dnsmasq.d"'], []),
    (25, 3, None, "file", "converted", ['allow file read "/etc/dnsmasq.d/*.conf"'], []),
    (26, 3, None, "file", "converted", ['allow file read "/srv/tftp/**", "/srv/tftp", "/var/tftp/**", "/var/tftp"'], []),
    (27, 3, None, "file", "converted", [f'allow file read "/proc/{PID}/fd"'], []),
    (28, 3, None, "file", "partial", [f'allow file {RW} "/var/lib/misc/dnsmasq.leases"'], ["lock"]),
    (29, 3, None, "file", "converted", ['allow file append "/var/log/dnsmasq.log"'], []),
    (30, 3, None, "file", "converted", ['allow file read, exec-map "/usr/{bin,sbin}/dnsmasq"'], []),
    (31, 3, None, "file", "converted", ['allow exec "/{,usr/}bin/{ba,da,}sh"'], []),
    (32, 3, None, "file", "not", [], ["exec-transition"]),
    (33, 3, None, "file", "converted", [f'allow file {RW} "/dev/tty{{0,1,2,3,4,5,6,7,8,9}}*"'], []),
    (34, 3, None, "file", "not", [], ["negated-class"]),
    (35, 3, None, "file", "converted", [f'allow file {RW} owner "/home/*/.dnsmasq", "/root/.dnsmasq"'], []),
    (36, 3, None, "file", "converted", ['deny file read "/etc/shadow"'], []),
    (37, 3, None, "file", "converted", ['deny file write, create, delete, chmod, chown "/etc/dnsmasq.d/secret*"'], []),
    (38, 3, None, "file", "converted", ['audit file read "/etc/ethers"'], []),
    (39, 3, None, "file", "converted",
     ['deny file read, write, create, delete, chmod, chown "/home/*/.ssh/**", "/root/.ssh/**"'], []),
    (40, 3, None, "link", "not", [], ["link"]),
    (41, 3, None, "dbus", "not", [], ["dbus"]),
    (42, 3, None, "unix", "not", [], ["unix"]),
    (45, 5, None, "file", "not", [], ["child-profile"]),      # in ^untrusted
    (49, 5, None, "file", "not", [], ["child-profile"]),      # in profile helper
]
HELPER = MINI + [
    (57, 3, None, "capability", "converted", ["deny capability sys_admin"], []),
    (58, 3, None, "file", "converted", ['allow file read "/etc/helper.conf"'], []),
]


def _entries(profile):
    return [(e.loc.line, e.loc.col, e.via, e.kind, e.status, e.lines, [k for k, _ in e.reasons + e.approx])
            for e in profile.entries]


def _run(paths, base=BASE, output=None, verbose=False):
    out, err = io.StringIO(), io.StringIO()
    code = run_import([str(p) for p in paths], output, str(base), verbose, out, err)
    return code, out.getvalue(), err.getvalue()


def test_dnsmasq_fixture_converts_exactly():
    r = import_apparmor([str(PROFILE)], BASE)
    assert r.ok
    (f,) = r.files
    dnsmasq, helper = f.profiles
    assert (dnsmasq.name, dnsmasq.policy, helper.name, helper.policy) == \
        ("dnsmasq", "dnsmasq", "helper-tool", "helper-tool")
    assert _entries(dnsmasq) == DNSMASQ
    assert _entries(helper) == HELPER
    assert dnsmasq.notes == ["flags=(attach_disconnected): no equivalent"]
    assert r.counts() == {"rules": 44, "converted": 31, "approximate": 2, "partial": 1, "not": 10,
                          "deny_not_converted": 0}


def test_dnsmasq_policy_head_and_layout():
    code, text, err = _run([PROFILE])
    assert code == 0, err
    head = text[text.index("policy dnsmasq {"):].splitlines()[:9]
    assert head == [
        "policy dnsmasq {",
        "    # AppArmor profile `dnsmasq` (dnsmasq:9:1)",
        '    subject exe "/usr/{bin,sbin}/dnsmasq"',
        "    mode audit  # flags=(complain)",                  # complain -> audit
        "    default deny",
        "    # flags=(attach_disconnected): no equivalent",
        "    use aa-abstractions-mini",                        # one ruleset per include file,
        "    use aa-abstractions-mini-nested",                 # nested ones used beside it
        "    allow capability net_bind_service, setuid  # dnsmasq:12",
    ]
    assert "policy helper-tool {" in text and "    mode enforce\n" in text
    # one ruleset per include file, shared by both policies
    assert text.count("ruleset aa-abstractions-mini {") == 1
    assert text.count("use aa-abstractions-mini\n") == 2
    # the long @{pid} is named once with a let (same text, same meaning)
    assert f'let pid = "{PID}"  # @{{pid}}' in text
    assert '"/proc/${pid}/fd"' in text
    # tunables missing from the base: the default set is used and said
    assert "Variables from the default tunables" in text and "@{pid}" in text.splitlines()[5]


def test_not_converted_rules_are_listed_with_file_and_line():
    code, text, err = _run([PROFILE])
    assert code == 0
    listed = re.findall(r"# not converted: (\S+:\d+:\d+): ", text)
    assert listed == [
        "dnsmasq:16:3", "dnsmasq:18:3", "dnsmasq:21:3", "dnsmasq:32:3", "dnsmasq:34:3",
        "dnsmasq:40:3", "dnsmasq:41:3", "dnsmasq:42:3",
        "dnsmasq:44:3", "dnsmasq:45:5", "dnsmasq:48:3", "dnsmasq:49:5",   # the hat and the child profile
    ]
    assert re.findall(r"# in part: (\S+:\d+:\d+): ", text) == ["dnsmasq:28:3"]
    assert re.findall(r"# approximately: (\S+:\d+:\d+): ", text) == ["dnsmasq:19:3", "dnsmasq:20:3"]
    assert "# not converted: dnsmasq:32:3: /usr/lib/libvirt/leaseshelper Px, -- Px: exec transition" in text
    assert "`include if exists <local/dnsmasq>`: not present (an optional include)" in text
    # the summary on stderr
    assert "policyc: 2 of 2 profiles became policies; converted 33 of 44 rules (2 approximately); " \
           "10 not expressible; 1 in part\n" in err
    assert not re.search(r"^\s+\d+  owner: ", err, re.M)   # `owner` file rules are converted
    assert "the output passes `policyc check`" in err


def test_verbose_lists_every_rule_on_stderr():
    code, _, err = _run([PROFILE], verbose=True)
    assert code == 0
    lines = [ln for ln in err.splitlines() if re.match(r"policyc: \S+:\d+:\d+: (not converted|in part|approx)", ln)]
    assert len(lines) == 10 + 1 + 2          # 10 not converted, 1 in part, 2 approximately
    assert not any("dnsmasq:35:3" in ln for ln in lines)   # `owner @{HOME}/.dnsmasq rw,`: converted


def test_output_passes_check_and_is_formatted(tmp_path):
    out = tmp_path / "out.policy"
    code, stdout, err = _run([PROFILE], output=str(out))
    assert code == 0, err
    assert stdout == ""
    front = front_end([str(out)], Diagnostics(), checks=True)
    assert front.program is not None and not front.diags.has_errors, [str(d) for d in front.diags.items]
    from policyc.fmt import format_text
    text = out.read_text()
    assert format_text(str(out), text, Diagnostics()) == text


def _decide(program, op, path=None, **kw):
    return decide(program, Event(exe="/usr/sbin/dnsmasq", op=op, path=path, **kw)).action


def test_converted_policy_decides_as_the_profile(tmp_path):
    """A few decisions of the converted policy (evaluated as policyc would enforce it; the
    fixture is in complain mode, so what the profile denies is `audit`)."""
    out = tmp_path / "out.policy"
    assert _run([PROFILE], output=str(out))[0] == 0
    program = front_end([str(out)], Diagnostics(), checks=True).program
    assert _decide(program, "file.read", "/etc/dnsmasq.d") == "allow"           # `/etc/dnsmasq.d/ r`
    assert _decide(program, "file.read", "/etc/dnsmasq.d/a.conf") == "allow"
    assert _decide(program, "file.read", "/etc/dnsmasq.d/a.txt") == "audit"     # default deny, complain
    assert _decide(program, "file.read", "/srv/tftp") == "allow"                # `@{TFTP_DIR}/{,**}`
    assert _decide(program, "file.read", "/var/tftp/boot/x") == "allow"
    assert _decide(program, "file.read", "/proc/1234/fd") == "allow"
    assert _decide(program, "file.read", "/proc/self/fd") == "audit"
    assert _decide(program, "file.read", "/etc/shadow") == "audit"              # deny, complain
    assert _decide(program, "file.append", "/var/log/dnsmasq.log") == "allow"
    assert _decide(program, "file.write", "/var/log/dnsmasq.log") == "audit"    # `a` is not `w`
    assert _decide(program, "exec", "/usr/bin/dash") == "allow"                 # `ix`
    assert _decide(program, "exec", "/usr/lib/libvirt/leaseshelper") == "audit"  # `Px`: not converted
    assert _decide(program, "file.read", "/home/alice/.dnsmasq", owner=True) == "allow"   # `owner ... rw`
    assert _decide(program, "file.read", "/home/alice/.dnsmasq") == "audit"     # not the owner
    assert _decide(program, "net.connect", addr="10.0.0.1", port=53, proto="udp") == "allow"
    assert _decide(program, "net.connect", addr="2001:db8::1", port=53, proto="udp") == "audit"  # inet only
    assert _decide(program, "net.connect", addr="2001:db8::1", port=80, proto="tcp") == "allow"  # inet6
    assert _decide(program, "capability", cap="setuid") == "allow"
    assert _decide(program, "capability", cap="sys_admin") == "audit"
    assert _decide(program, "module.load") == "allow"                          # capability sys_module
    assert _decide(program, "signal", signal="term", target_exe="/usr/sbin/libvirtd") == "allow"
    assert _decide(program, "signal", signal="kill", target_exe="/usr/sbin/libvirtd") == "audit"
    helper = Event(exe="/usr/lib/dnsmasq/helper", op="capability", cap="sys_admin")
    assert decide(program, helper).action == "deny"                            # enforce mode


# --- errors ----------------------------------------------------------------------------------------
BAD = {
    "unclosed": ("/usr/bin/x {\n  /etc/x r,\n", 1, 12, "never closed"),
    "missing-comma": ("/usr/bin/x {\n  /etc/x r\n}\n", 2, 11, "missing `,`"),
    "unterminated": ('/usr/bin/x {\n  "/etc/x r,\n}\n', 2, 3, "unterminated"),
    "stray-brace": ("}\n", 1, 1, "unmatched `}`"),
    "include-nothing": ("include\n/usr/bin/x {\n}\n", 1, 1, "`include` needs a file"),
    "bad-head": ("profile {\n}\n", 1, 1, "`profile` needs a name"),
    "rule-outside": ("/etc/x r,\n", 1, 1, "a rule outside any profile"),
    "unclosed-paren": ("/usr/bin/x {\n  signal (send,\n}\n", 2, 10, "unclosed `(`"),
    "deep-blocks": ("/usr/bin/x {\n" + "audit {\n" * 3000 + "}\n" * 3001, 65, 7, "blocks nested deeper than 64"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_profile_is_an_error_at_file_line_col(tmp_path, name):
    text, line, col, message = BAD[name]
    p = tmp_path / name
    p.write_text(text)
    code, out, err = _run([p])
    assert code == 2
    assert out == ""
    assert f"policyc: error: {p}:{line}:{col}: " in err, err
    assert message in err
    assert "Traceback" not in err


def test_other_files_are_still_converted_when_one_is_malformed(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("/usr/bin/x {\n  /etc/x r\n}\n")
    out = tmp_path / "out.policy"
    code, _, err = _run([bad, PROFILE], output=str(out))
    assert code == 2
    assert f"{bad}:2:11: missing `,`" in err
    assert "policy dnsmasq {" in out.read_text()


def test_an_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "abstractions").mkdir()
    (tmp_path / "abstractions" / "broken").write_text("  /etc/a r,\n  /etc/b r\n")
    p = tmp_path / "prof"
    p.write_text("/usr/bin/x {\n  include <abstractions/broken>\n}\n")
    code, _, err = _run([p], base=tmp_path)
    assert code == 2
    assert f"{tmp_path / 'abstractions' / 'broken'}:2:11: missing `,`" in err


NASTY = {
    "empty": "",
    "only-comments": "# nothing\n",
    "binary": "\x00\x01\xff{}{{[[(((\n",
    "include-cycle": "include <abstractions/self>\n/usr/bin/x {\n  include <abstractions/self>\n}\n",
    "var-cycle": "@{A}=@{B}\n@{B}=@{A}/x\n/usr/bin/x {\n  @{A} r,\n}\n",
    "var-explosion": "@{A}=a b c d e f g h\n@{B}=@{A}@{A}@{A}@{A}\n/usr/bin/x {\n  /@{B}/@{B} r,\n}\n",
    "deep-braces": "/usr/bin/x {\n  /" + "{a," * 40 + "b" + "}" * 40 + " r,\n}\n",
    "unclosed-glob": "/usr/bin/x {\n  /etc/{a,b r,\n  /etc/[ab r,\n}\n",
    "weird-rules": "/usr/bin/x {\n  userns,\n  all,\n  mqueue,\n  capability nonsense,\n  network foo bar,\n"
                   "  signal (send) set=(rtmin+3 exists) peer=unconfined,\n  ptrace (bogus),\n  /x rwzq,\n"
                   "  /x,\n  set rlimit nofile <= 10,\n  change_profile -> **,\n  file,\n  deny file,\n"
                   "  /a\\* r,\n  \"/with space/ok\" r,\n  /\\{lit\\} r,\n  ${B} = true\n  if ${B} {\n  /if r,\n  }\n}\n",
    "profile-kinds": "profile noattach {\n  /x r,\n}\n^tophat {\n  /y r,\n}\n"
                     "/usr/bin/y xattrs=(user.foo=bar) {\n  /z r,\n}\n/usr/lib/f{,[^s]} {\n /q r,\n}\n",
    "not-utf8": "/usr/bin/x {\n  /etc/\udcff r,\n}\n",
    "missing-include": "/usr/bin/x {\n  include <abstractions/nope>\n  include \"/nonexistent/x\"\n}\n",
    "qualifier-block": "/usr/bin/x {\n  audit deny {\n    /etc/a r,\n    capability sys_admin,\n  }\n}\n",
    "escaped-newline": "/usr/bin/x {\n  /etc/a\\012b r,\n  \"/etc/q\\\"uote\" r,\n  /etc/back\\\\slash r,\n}\n",
    "a\nallow file write \"x\"\n": "/usr/bin/x {\n  /etc/a r,\n}\n",    # a file name with a newline
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_no_input_crashes(tmp_path, name):
    (tmp_path / "abstractions").mkdir()
    (tmp_path / "abstractions" / "self").write_text("include <abstractions/self>\n  /etc/self r,\n")
    p = tmp_path / name
    p.write_bytes(NASTY[name].encode("utf-8", "surrogateescape"))
    code, out, err = _run([p], base=tmp_path)
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err
    if code == 0:
        front_end_diags = Diagnostics()
        f = tmp_path / "out.policy"
        f.write_text(out)
        front = front_end([str(f)], front_end_diags, checks=True)
        assert not front.diags.has_errors


def test_the_nasty_rules_are_listed_not_dropped(tmp_path):
    p = tmp_path / "weird"
    p.write_text(NASTY["weird-rules"])
    r = import_apparmor([str(p)], tmp_path)
    (prof,) = r.files[0].profiles
    got = {(e.loc.line, e.status, tuple(k for k, _ in e.reasons)) for e in prof.entries}
    assert (2, "not", ("unknown-rule",)) in got                       # userns (AppArmor 4)
    assert (5, "not", ("capability-unknown",)) in got
    assert (7, "not", ("signal-unknown", "signal-exists")) in got    # rtmin+3, exists
    assert (9, "not", ("bad-rule",)) in got                            # /x rwzq
    assert (13, "partial", ("lock",)) in got                           # file,
    assert (15, "not", ("literal-glob-char",)) in got                  # /a \* : a literal `*`
    by_line = {e.loc.line: e for e in prof.entries}
    assert by_line[13].lines == ["allow file", "allow exec"]
    assert by_line[14].lines == ["deny file", "deny exec"]
    assert by_line[16].lines == ['allow file read "/with space/ok"']
    assert by_line[17].reasons[0][0] == "literal-glob-char"
    assert by_line[20].reasons == [("conditional", REASONS["conditional"])]


def test_profiles_without_a_subject_are_listed(tmp_path):
    p = tmp_path / "kinds"
    p.write_text(NASTY["profile-kinds"])
    r = import_apparmor([str(p)], tmp_path)
    got = [(pr.name, pr.policy, pr.reason.split(":")[0] if pr.reason else None) for pr in r.files[0].profiles]
    assert got == [
        ("noattach", None, "the profile has no attachment path (only a transition enters it)"),
        ("tophat", None, "a hat at the top level"),
        ("/usr/bin/y", None, "xattrs attachment condition"),
        ("/usr/lib/f{,[^s]}", None, "the attachment `/usr/lib/f{,[^s]}`"),
    ]
    assert all(e.status == "not" for pr in r.files[0].profiles for e in pr.entries)
    assert "# not converted: AppArmor profile `noattach`" in r.text


def test_signal_rules_past_the_kernel_limit_are_listed(tmp_path):
    """The kernel object holds 64 `to exe` targets per policy (policyc/ir/limits.py): the
    65th is listed, not written, so the output still passes check."""
    p = tmp_path / "many"
    p.write_text("/usr/bin/x {\n" + "".join(f"  signal (send) set=(term) peer=/usr/bin/p{i},\n" for i in range(66))
                 + "  signal (send) set=(hup),\n}\n")
    code, out, err = _run([p], base=tmp_path)
    assert code == 0, err
    assert out.count("allow signal term to exe") == 64
    assert re.findall(r"# not converted: many:(\d+):3: .* -- past what the kernel object holds", out) == ["66", "67"]
    assert "    allow signal hup  # many:68" in out           # no target: still within 256 rules


def test_directories_stand_for_their_profile_files(tmp_path):
    (tmp_path / "usr.bin.a").write_text("/usr/bin/a {\n  /a r,\n}\n")
    (tmp_path / "usr.bin.b.dpkg-old").write_text("/usr/bin/b {\n}\n")
    (tmp_path / "README").write_text("not a profile\n")
    (tmp_path / "abstractions").mkdir()
    r = import_apparmor([str(tmp_path)], tmp_path)
    assert [f.path for f in r.files] == [str(tmp_path / "usr.bin.a")]


def test_a_fifo_or_missing_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, _, err = _run([fifo, tmp_path / "missing"])
    assert code == 2
    assert f"{fifo}: not a regular file" in err and "missing: cannot read" in err


def test_no_profiles_is_an_error():
    code, _, err = _run([])
    assert code == 2 and "name at least one AppArmor profile" in err
    code, _, err = _run([BASE / "tunables" / "home"])
    assert code == 2 and "no AppArmor profile in the given files" in err
    code, _, err = _run([BASE / "abstractions" / "mini-nested"])     # rules, but no profile
    assert code == 2 and "mini-nested:1:3: a rule outside any profile: `/dev/null rw,`" in err


# --- globs: held against AppArmor's pattern semantics ---------------------------------------------
@pytest.mark.parametrize("aa, policyc", [
    ("/etc/dnsmasq.d/", ["/etc/dnsmasq.d"]),
    ("/etc/dnsmasq.d/*", ["/etc/dnsmasq.d/*"]),
    ("/srv/tftp/{,**}", ["/srv/tftp/**", "/srv/tftp"]),
    ("/srv/tftp/**", ["/srv/tftp/**"]),
    ("/tmp/**/", ["/tmp/**"]),
    ("/", ["/"]),
    ("/usr/share/dnsmasq{-base,}/", ["/usr/share/dnsmasq{-base,}"]),
    ("/a/{b/,c}", ["/a/c", "/a/b"]),
    ("/proc/[0-9]*/fd/", ["/proc/{0,1,2,3,4,5,6,7,8,9}*/fd"]),
    ("/proc/[^/]*/x", ["/proc/?*/x"]),
    ("/a//b///c", ["/a/b/c"]),
    ("/x/\\[lit\\]", ["/x/[lit]"]),
    ("/x/***", ["/x/**"]),
])
def test_glob_conversion(aa, policyc):
    assert aaglob.to_policyc(aa) == policyc


@pytest.mark.parametrize("aa, key", [
    ("/run/[^.]*.pid", "negated-class"),
    ("/a/\\*", "literal-glob-char"),
    ("/a/[*]", "class"),
    ("/a/[\x01-\x7f]", "class"),
    ("/" + "{a," * 17 + "b" + "}" * 17, "nesting"),
])
def test_glob_refusals(aa, key):
    with pytest.raises(aaglob.Unconvertible) as e:
        aaglob.to_policyc(aa)
    assert e.value.key == key


def _aa_regex(pattern: str) -> str:
    """AppArmor's own reading of a pattern (parser_regex.c, convert_aaregex_to_pcre), for
    patterns without escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        last = out[-1][-1] if out else ""
        if ch == "*":
            j = i
            while j < len(pattern) and pattern[j] == "*":
                j += 1
            if last == "/" and (j == len(pattern) or pattern[j] == "/"):
                out.append("[^/]")
            if i + 1 < len(pattern) and pattern[i + 1] == "*":
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
            continue
        if ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pattern.index("]", i + 2 if pattern[i + 1] == "^" else i + 1)
            out.append(pattern[i:j + 1])
            i = j + 1
            continue
        elif ch == "{":
            out.append("(")
        elif ch == ",":
            out.append("|")
        elif ch == "}":
            out.append(")")
        else:
            out.append(re.escape(ch) if ch != "/" else "/")
        i += 1
    return "".join(out)


BLOCKS = ["/", "/", "/", "a", "b", ".", "*", "**", "?", "[ab]", "[0-9]", "[^/]", "{a,b}", "{,a/}",
          "{/x,}", "/{,**}", "{a/,b}", "{,*}", "/*/", "x{,/**}"]
NAMES = ["a", "b", "ab", "ba", "x", ".a", "0", "9a", "a.b", "aa"]


def test_glob_conversion_matches_apparmor_semantics():
    """For a path p as the kernel names it (no trailing `/`), the policyc globs match p exactly
    when AppArmor's pattern matches p or, for a directory, p + "/"."""
    rnd = random.Random(16)
    paths = ["/"] + ["/" + "/".join(rnd.choice(NAMES) for _ in range(rnd.randint(1, 4))) for _ in range(400)]
    checked = 0
    for _ in range(600):
        pattern = aaglob.filter_slashes("/" + "".join(rnd.choice(BLOCKS) for _ in range(rnd.randint(1, 6))))
        try:
            globs = aaglob.to_policyc(pattern)
        except aaglob.Unconvertible:
            continue
        rx = re.compile(_aa_regex(pattern))
        ms = []
        for g in globs:
            parsed = parse_glob(g, Span("t", 1, 1, 1, 1), Diagnostics())
            assert parsed is not None, (pattern, g)
            ms.append(matcher(parsed.parts))
        for p in paths:
            aa = bool(rx.fullmatch(p)) or (p != "/" and bool(rx.fullmatch(p + "/")))
            pc = any(m.matches(path_bytes(p)) for m in ms)
            assert aa == pc, (pattern, globs, p, aa, pc)
            checked += 1
    assert checked > 100_000


# --- Debian's profiles -------------------------------------------------------------------------------
def _cache() -> Path:
    return Path(os.environ.get("POLICYC_CACHE") or Path.home() / ".cache" / "policyc") / "apparmor"


def debian_profiles(cache: Path) -> list[str]:
    """The profile files of apparmor-profiles and apparmor-profiles-extra, as bench/import_apparmor.py
    extracts them."""
    out = []
    for pkg in ("apparmor-profiles", "apparmor-profiles-extra"):
        root = cache / "pkgs" / pkg
        etc = root / "etc" / "apparmor.d"
        skip = {"abstractions", "tunables", "abi", "local", "disable", "force-complain"}
        for p in sorted(etc.rglob("*")) if etc.is_dir() else []:
            if p.is_file() and p.relative_to(etc).parts[0] not in skip:
                out.append(str(p))
        extra = root / "usr" / "share" / "apparmor" / "extra-profiles"
        out += [str(p) for p in sorted(extra.iterdir()) if p.is_file() and p.name != "README"] \
            if extra.is_dir() else []
    return out


def test_every_debian_profile_converts_without_a_crash(tmp_path):
    cache = _cache()
    if not (cache / "base").is_dir() or not debian_profiles(cache):
        pytest.skip(f"no Debian AppArmor profiles in {cache}: run `.venv/bin/python bench/import_apparmor.py` "
                    "(apt-get download apparmor apparmor-profiles apparmor-profiles-extra, no root) to fill it")
    profiles = debian_profiles(cache)
    assert len(profiles) >= 100
    out = tmp_path / "debian.policy"
    code, _, err = _run(profiles, base=cache / "base", output=str(out))
    assert code == 0, err
    assert "the output passes `policyc check`" in err
    m = re.search(r"policyc: (\d+) of (\d+) profiles became policies", err)
    assert m and int(m.group(1)) >= 100, err
    for p in profiles[::30]:         # one at a time too (bench/import_apparmor.py runs every one)
        code, _, err = _run([p], base=cache / "base")
        assert code == 0, (p, err)


def test_owner_rules_convert_and_other_does_not(tmp_path):
    """`owner` becomes policyc's `owner` (file rules; an exec part is not converted); `other`
    (not the owner) has no policyc equivalent."""
    prof = tmp_path / "p"
    prof.write_text('/usr/bin/p {\n  owner /srv/** rw,\n  owner /opt/x ix,\n  other /tmp/** r,\n  deny owner /etc/x w,\n}\n')
    r = import_apparmor([str(prof)], tmp_path)
    (f,) = r.files
    (p,) = f.profiles
    got = {e[0]: e[4:] for e in _entries(p)}
    assert got[2] == ("converted", [f'allow file {RW} owner "/srv/**"'], [])
    assert got[3] == ("not", [], ["owner"])
    assert got[4] == ("not", [], ["other"])
    assert got[5] == ("converted", ['deny file write, create, delete, chmod, chown owner "/etc/x"'], [])


def test_exec_transitions_convert_where_policyc_can_say_them(tmp_path):
    """`ux`/`Ux` is `as unconfined`; `px -> NAME` is `as policy NAME'` (the name the importer
    gives profile NAME); a child profile, a fallback or a bare `Px` stay listed."""
    from policyc.importers import apparmor as A

    prof = tmp_path / "foo"
    prof.write_text("/usr/sbin/foo {\n  /usr/bin/bar Ux,\n  /usr/bin/baz Px -> /usr/sbin/bazd,\n"
                    "  /usr/bin/qux px -> qux-prof,\n  /usr/bin/kid Cx -> kid,\n  /usr/bin/plain Px,\n"
                    "  /usr/bin/fb pux -> fb,\n}\n")
    text = A.import_apparmor([str(prof)], base=str(tmp_path)).text
    assert 'allow exec "/usr/bin/bar" as unconfined' in text
    assert 'allow exec "/usr/bin/baz" as policy bazd' in text
    assert 'allow exec "/usr/bin/qux" as policy qux-prof' in text
    for listed in ("/usr/bin/kid Cx -> kid", "/usr/bin/plain Px", "/usr/bin/fb pux -> fb"):
        assert [line for line in text.splitlines() if line.strip().startswith("# not converted:") and listed in line], listed
    assert not [line for line in text.splitlines() if line.strip().startswith("allow exec \"/usr/bin/kid\"")]
