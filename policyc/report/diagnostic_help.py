"""Each diagnostic code's section of docs/diagnostics.md: what SARIF rule help shows.

GENERATED from docs/diagnostics.md by policyc/report/helpgen.py: do not edit. After
changing the doc, run `python -m policyc.report.helpgen --write`; a unit test
fails while this file is out of date.
"""

from __future__ import annotations

from typing import NamedTuple

DOC_URL = 'https://github.com/policyc/policyc/blob/main/docs/diagnostics.md'


class Help(NamedTuple):
    name: str
    anchor: str          # GitHub's anchor of the code's heading in the doc
    text: str            # markdown: what the code means
    anti_pattern: str    # markdown
    best_practice: str   # markdown

    @property
    def uri(self) -> str:
        return f"{DOC_URL}#{self.anchor}"


HELP: dict[str, Help] = {
    'P001': Help(
        name='syntax-error',
        anchor='p001-syntax-error',
        text=(
            'The text does not follow the grammar (`grammar/policy.lark`): an unexpected token or\n'
            'character, an unterminated string, a missing `}`, input nested too deeply. The parser\n'
            'collects errors and goes on (at most one per line, 25 per file).'
        ),
        anti_pattern='`allow file read "/a" "/b"` (a missing comma), `policy p {` without `}`.',
        best_practice=(
            '`allow file read "/a", "/b"`; let `policyc fmt` lay the file out so a\n'
            'missing brace shows.'
        ),
    ),
    'P004': Help(
        name='include-not-found',
        anchor='p004-include-not-found',
        text=(
            'An `include "path"` names a file that does not exist. Paths are relative to the including\n'
            'file.'
        ),
        anti_pattern=(
            '`include "base.policy"` in `policies/nginx.policy` when the file is\n'
            '`policies/abstractions/base.policy`.'
        ),
        best_practice='`include "abstractions/base.policy"`.',
    ),
    'P005': Help(
        name='cycle',
        anchor='p005-cycle',
        text=(
            'A file includes itself (directly or through others), includes nest deeper than 32, a\n'
            'ruleset uses itself, or a `let` refers to itself through other lets (the message names the\n'
            'cycle: `` `a` -> `b` -> `a` ``). A note shows each step of the cycle. Also what grows without\n'
            'end the same way: a string longer than 65,536 characters after `${...}` interpolation (16 times\n'
            'the longest path), more than 64 Mi characters of interpolated text in a program, or more than\n'
            '250,000 rules after `use` splices rulesets into each other.'
        ),
        anti_pattern='`a.policy` includes `b.policy`, which includes `a.policy`.',
        best_practice='put what both need in a third file that includes nothing back.',
    ),
    'P006': Help(
        name='unreadable-input',
        anchor='p006-unreadable-input',
        text=(
            'A path cannot be read as a policy: it does not exist, is a directory without `.policy`\n'
            'files, is not a regular file (a FIFO, `/dev/zero`: refused before a byte is read, named on\n'
            'the command line or in an `include`), is not UTF-8, contains a NUL byte, or is larger than\n'
            '64 MiB.'
        ),
        anti_pattern='`policyc check policy.bin`.',
        best_practice='policy files are UTF-8 text ending in `.policy` (and `.policy.test`).',
    ),
    'P010': Help(
        name='unknown-family',
        anchor='p010-unknown-family',
        text=(
            'The word after the decision is not a rule family (`file`, `exec`, `net`, `capability`,\n'
            '`signal`, `ptrace`, `mount`, `module`, `bpf`). Comes with "did you mean".'
        ),
        anti_pattern='`allow files read "/srv/**"`.',
        best_practice='`allow file read "/srv/**"`.',
    ),
    'P011': Help(
        name='unknown-operation',
        anchor='p011-unknown-operation',
        text=(
            'An operation the family does not have (`file raed`), or operations on a family that takes\n'
            'none (`exec run "/x"`); also a bad `--op` of `policyc explain`. Comes with "did you mean".'
        ),
        anti_pattern='`allow file readwrite "/srv/**"`.',
        best_practice='`allow file read, write "/srv/**"`.',
    ),
    'P012': Help(
        name='unknown-capability',
        anchor='p012-unknown-capability',
        text=(
            'Not a Linux capability. Names are written without `CAP_` (accepted, and dropped), lower\n'
            'case. Comes with "did you mean".'
        ),
        anti_pattern='`allow capability net_bind`.',
        best_practice='`allow capability net_bind_service`.',
    ),
    'P013': Help(
        name='unknown-signal',
        anchor='p013-unknown-signal',
        text='Not a signal name (without `SIG`, which is accepted and dropped). Comes with "did you mean".',
        anti_pattern='`deny signal kil`.',
        best_practice='`deny signal kill, term`.',
    ),
    'P014': Help(
        name='undefined-variable',
        anchor='p014-undefined-variable',
        text=(
            'A `${name}` no visible `let` defines, or an unclosed `${`. A file sees its own top-level\n'
            "`let`s, those of the files it includes, and, inside a policy or ruleset, that block's own."
        ),
        anti_pattern='`allow file read "${webrot}/**"`.',
        best_practice='`let webroot = "/srv/www"` then `"${webroot}/**"`.',
    ),
    'P015': Help(
        name='defined-twice',
        anchor='p015-defined-twice',
        text=(
            'Two policies or rulesets of one name, a `let` defined twice in one scope, `mode` or\n'
            '`default` set twice in one policy, `protect policyc` written twice in one policy.'
        ),
        anti_pattern='`mode enforce` ... `mode audit` in one policy.',
        best_practice='one setting; to try a policy in audit mode, change the one line.',
    ),
    'P016': Help(
        name='missing-subject',
        anchor='p016-missing-subject',
        text='A policy with no `subject`: it would govern nothing.',
        anti_pattern='`policy web { default deny ... }`.',
        best_practice=(
            '`subject exe "/usr/sbin/nginx"`, `subject cgroup "/system.slice/x.service"`\n'
            'or `subject all`.'
        ),
    ),
    'P017': Help(
        name='bad-setting',
        anchor='p017-bad-setting',
        text=(
            '`mode` is `enforce` or `audit`, `default` is `allow` or `deny`, the only acknowledgement\n'
            'is `host-wide-deny`, and the only thing `protect` protects is `policyc`. `protect policyc`\n'
            'belongs in a policy: in a ruleset it is an error (a `use` brings rules, not settings).'
        ),
        anti_pattern='`mode enforcing`, `default reject`, `protect policy`.',
        best_practice='`mode enforce`, `default deny`, `protect policyc`.',
    ),
    'P018': Help(
        name='bad-path',
        anchor='p018-bad-path',
        text=(
            'A path, subject or target pattern that is not absolute (every alternative of a leading\n'
            '`{...}` must start with `/`), or a glob that is not well formed (an unclosed `{`, a stray\n'
            '`}`, braces nested deeper than 16), or a glob character (`*`, `?`, `{`, `}`) in a cgroup\n'
            '(`subject cgroup`, `except cgroup`, `to cgroup`): the kernel tests a cgroup by its id, so a\n'
            'cgroup names one directory and everything below it; the hint names the parent to use. Also a\n'
            'pattern no path can match by its length: a literal path of 4,096 bytes or more (the kernel\n'
            'decides paths of at most 4,095 bytes and fails closed on longer ones) or any pattern longer\n'
            'than 65,536 characters. The caret points into the string.'
        ),
        anti_pattern=(
            '`subject exe "nginx"`, `allow file read "/srv/{a,b"`,\n'
            '`subject cgroup "/system.slice/*.service"`.'
        ),
        best_practice=(
            '`subject exe "/usr/sbin/nginx"`, `allow file read "/srv/{a,b}"`,\n'
            '`subject cgroup "/system.slice"`.'
        ),
    ),
    'P019': Help(
        name='bad-object',
        anchor='p019-bad-object',
        text=(
            'An object the family does not take (paths on `capability`, an address on `file`, `to exe`\n'
            'on `bpf`), an unknown protocol, an address that is not an IPv4/IPv6 network (host bits\n'
            'set: the hint gives the network), or an address or port on `net create` (a socket has\n'
            'neither when it is created; a `net` rule without operations applies its address and port to\n'
            '`connect` and `bind` only).'
        ),
        anti_pattern='`allow net connect 10.0.0.1/8`.',
        best_practice='`allow net connect 10.0.0.0/8`.',
    ),
    'P020': Help(
        name='bad-port',
        anchor='p020-bad-port',
        text='A port outside 0-65535, or a range whose low end is above its high end.',
        anti_pattern='`allow net bind port 8090-8080`.',
        best_practice='`allow net bind port 8080-8090`.',
    ),
    'P021': Help(
        name='unknown-ruleset',
        anchor='p021-unknown-ruleset',
        text='`use NAME` of a ruleset that no loaded file defines. Comes with "did you mean".',
        anti_pattern='`use base` without `include "abstractions/base.policy"`.',
        best_practice='include the file that defines the ruleset.',
    ),
    'P022': Help(
        name='test-of-unknown-policy',
        anchor='p022-test-of-unknown-policy',
        text='A `test NAME { ... }` block whose policy does not exist.',
        anti_pattern='`test ngnix { ... }`.',
        best_practice='`test nginx { ... }`, beside the policy or in `nginx.policy.test`.',
    ),
    'P023': Help(
        name='test-needs-exe',
        anchor='p023-test-needs-exe',
        text=(
            'The policy\'s subject is a pattern (`subject exe "/usr/bin/*"`), so the test must say which\n'
            'program it runs as.'
        ),
        anti_pattern='`test tools { expect deny bpf }`.',
        best_practice='`test tools { exe "/usr/bin/make"  expect deny bpf }`.',
    ),
    'P024': Help(
        name='bad-expectation',
        anchor='p024-bad-expectation',
        text=(
            'An expectation names one event: one path, one address, one port, one operation; a `file`\n'
            'or `exec` expectation needs a path.'
        ),
        anti_pattern='`expect deny file read, write "/etc/shadow"`.',
        best_practice='one `expect` line per operation.',
    ),
    'P025': Help(
        name='bad-limit',
        anchor='p025-bad-limit',
        text=(
            "A rule's `limit` must be a count from 1 to 1,000,000 per `s` (`sec`, `second`), `min`\n"
            '(`minute`) or `h` (`hour`).'
        ),
        anti_pattern=(
            '`deny file read "/etc/shadow" limit 0/s` (to silence a rule: the denial would\n'
            'still happen, unseen) or `limit 100/day`.'
        ),
        best_practice='`limit 100/s`; a denial worth making is worth one event a second.',
    ),
    'P026': Help(
        name='owner-not-file',
        anchor='p026-owner-not-file',
        text=(
            "`owner` narrows a rule to the files the process owns (the file's owner is its fsuid), so it\n"
            'is for `file` rules and `file` expectations only; an exec, a network address, a mount or a\n'
            'signal has no file whose owner the kernel compares.'
        ),
        anti_pattern='`allow exec owner "/home/*/bin/*"`.',
        best_practice='`allow file read, write owner "/home/*/**"`, and exec rules without `owner`.',
    ),
    'P029': Help(
        name='bad-transition',
        anchor='p029-bad-transition',
        text=(
            '`as policy NAME` and `as unconfined` say what an exec makes of the program it starts, so they\n'
            'belong to an `allow` (or `audit`) `exec` rule that names its programs, and `NAME` is another\n'
            "policy than the rule's own."
        ),
        anti_pattern=(
            '`deny exec "/usr/bin/x" as unconfined`, `allow file read "/x" as policy p`,\n'
            '`allow exec as unconfined` (every program), `as policy SELF`.'
        ),
        best_practice='`allow exec "/usr/sbin/logrotate" as policy logrotate`.',
    ),
    'P030': Help(
        name='host-wide-deny',
        anchor='p030-host-wide-deny',
        text=(
            'A policy that governs every process (`subject all`, an exe pattern matching every program,\n'
            'or the root cgroup `/`) in `enforce` mode denies something every system needs: running a\n'
            'shell or `env`, reading the loader cache or the C library, mapping it executable, reading\n'
            '`/etc/passwd` or `/dev/urandom`, writing `/dev/null`, `/tmp`, `/run` or the system log,\n'
            '`setuid`/`setgid`/`dac_override`/`chown`/`kill` capabilities, sending `term`/`kill`,\n'
            'loopback DNS and HTTP. Loading it would break the host. The error names the rule (or the\n'
            '`default deny`) and the essentials it denies; the essentials are events put through the\n'
            'reference evaluator, so whatever denies them is found. It is allowed with\n'
            '`acknowledge host-wide-deny` in the policy.'
        ),
        anti_pattern=(
            '```\n'
            'policy lockdown {\n'
            '    subject all\n'
            '    default deny\n'
            '    allow exec "/usr/sbin/sshd"\n'
            '}\n'
            '```'
        ),
        best_practice=(
            'deny the specific dangerous things host-wide (`deny module load`,\n'
            '`deny file write "/boot/**"`), confine programs with their own `subject exe` policies, try a\n'
            'host-wide policy in `mode audit` first, and acknowledge only a denial you mean.'
        ),
    ),
    'P040': Help(
        name='not-enforced',
        anchor='p040-not-enforced',
        text=(
            '`policyc build` (policyc/cli/build.py): the policy has rules of a family the kernel backend\n'
            'does not enforce yet. `check`, `explain` and `test` still evaluate them with the reference\n'
            'evaluator; building would silently drop them, so it stops.'
        ),
        anti_pattern=(
            'building a policy for enforcement that relies on a family the kernel side\n'
            'does not cover yet, expecting it to hold.'
        ),
        best_practice=(
            'keep such rules for documentation and tests, and build once the kernel side\n'
            'supports the family (the hint lists the families enforced today).'
        ),
    ),
    'P041': Help(
        name='over-kernel-limit',
        anchor='p041-over-kernel-limit',
        text=(
            "A policy has more rules of one kind than the kernel object's fixed tables hold: 64\n"
            'signal/ptrace rules with `to exe` targets (one bit each in a verdict), 256 signal/ptrace\n'
            'rules, 4,096 rules with a `limit`. Reported by `check` at the first rule past the limit;\n'
            '`build` refuses the same policy with the same words (policyc/ir/limits.py is the one place\n'
            'that counts).\n'
            '\n'
            'Also a policy whose path patterns (file, exec, mount, `subject exe`, `to exe`, `except exe`)\n'
            'need more than 250,000 states in the one automaton the kernel walks (policyc/ir/dfa.py\n'
            '`MAX_STATES`; docs/design.md, "The path automaton"). Reported at the rule (or subject) whose own\n'
            'automaton is the largest: "the path patterns need more than 250,000 automaton states (the\n'
            'cap); this rule alone needs at least 62,500 states". `check` builds the automaton to know,\n'
            'and `build` reuses it. `policyc lsp` does not report this one (it would build the automaton\n'
            'on every change: seconds for a large policy); `check` and `build` do.'
        ),
        anti_pattern=(
            '65 `deny signal kill to exe "/usr/bin/aN"` rules in one policy;\n'
            '`deny file read "/**/x*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*"` (the automaton must remember which\n'
            'of the last 18 components began with `x`: 3 * 2^17 + 2 states).'
        ),
        best_practice=(
            'one rule, one glob: `deny signal kill to exe "/usr/bin/{a1,a2,a3}"`; anchored\n'
            'patterns (`/home/*/.ssh/**`), a mid-path `**` followed by a short rest.'
        ),
    ),
    'P050': Help(
        name='kernel-lacks-hook',
        anchor='p050-kernel-lacks-hook',
        text=(
            '`policyc check --kernel 6.1|6.12|PATH` and `policyc build --kernel ...`\n'
            "(policyc/kernel_facts.py): the target kernel's BTF has no `bpf_lsm_<hook>` for a hook the rule\n"
            'is enforced in, or lacks a BPF helper its program calls. Reported at the rule (or the subject,\n'
            'or `default deny`, which decides every family), instead of failing at load time.'
        ),
        anti_pattern=(
            'shipping a policy to a fleet of older kernels and learning at `policyc load`\n'
            'time that half of it cannot attach.'
        ),
        best_practice=(
            '`policyc check --kernel PATH-TO-BTF` in CI for every kernel you run; remove\n'
            'or split the rules the oldest kernel cannot enforce.'
        ),
    ),
    'P051': Help(
        name='verifier-refuses-program',
        anchor='p051-verifier-refuses-program',
        text=(
            '`policyc check --load-test` (root, a kernel with BPF LSM; policyc/load_test.py): each\n'
            "policy's object is built and each of its programs loaded alone on the running kernel, nothing\n"
            "attached or pinned. A program the kernel's verifier refuses is reported at every rule whose\n"
            "hook it is (at the subjects when it is the subject machinery's), with the verifier's last\n"
            'lines as a note. Facts (P050) say which hooks and helpers exist; only a load says whether\n'
            "this verifier accepts the code (Debian 7.2's refused a pointer that 6.1 and 6.12 took)."
        ),
        anti_pattern=(
            'learning on the host, at `policyc load`, that libbpf failed the whole object\n'
            'on one program.'
        ),
        best_practice=(
            '`policyc check --load-test` once on each new kernel (in a VM of it, or on\n'
            'one machine of the fleet) before rolling policies out.'
        ),
    ),
    'P054': Help(
        name='mount-api-without-hook',
        anchor='p054-mount-api-without-hook',
        text=(
            'A **warning** (`policyc check` still exits 0) on a `deny mount` or `audit mount` rule that\n'
            'names paths, in a `default allow` policy. mount_setattr(2) (making a read-only bind mount\n'
            'writable), fspick(2) + fsconfig(2) (reconfiguring a mounted file system), fsmount(2) and\n'
            'open_tree(2) (cloning a tree) have no LSM hook on Debian 6.1, 6.12 and 7.2 (every kernel policyc\n'
            'supports). policyc decides them at the CAP_SYS_ADMIN check each of them makes first, as a\n'
            'mount with no path: a path-scoped rule never matches it. Only a `deny mount` without paths,\n'
            '`default deny`, or `deny capability sys_admin` covers these calls (for an `audit` rule, the\n'
            '`audit` forms count too). Not reported when the policy already has one of them, at least as\n'
            'severe as the rule. That capability check is recognised by x86-64 system call numbers; on\n'
            'another architecture only `deny capability sys_admin` (or a `default deny` that does not\n'
            'allow it) covers them.\n'
            '\n'
            '```\n'
            'policies/app.policy:4:5: warning[P054]: mount_setattr(2), fspick(2)/fsconfig(2), fsmount(2) and open_tree(2) have no LSM hook on Debian 6.1, 6.12 and 7.2 (every kernel policyc supports); policyc decides them at their CAP_SYS_ADMIN check as a mount with no path, which only a `deny mount` without paths, `default deny`, or `deny capability sys_admin` covers: this rule does not\n'
            '  |\n'
            '4 |     deny mount "/mnt/**"\n'
            '  |     ^~~~~~~~~~~~~~~~~~~~\n'
            '  = help: add `deny mount` (all paths) or `deny capability sys_admin` to close it\n'
            'policies/app.policy:3:5: note: policy `app` allows by default\n'
            '  |\n'
            '3 |     default allow\n'
            '  |     ^~~~~~~~~~~~~\n'
            '```'
        ),
        anti_pattern=(
            '```\n'
            'policy app {\n'
            '    subject exe "/usr/bin/app"\n'
            '    default allow\n'
            '    deny mount "/mnt/**"     # mount_setattr(2) on /mnt/data still makes it writable\n'
            '}\n'
            '```'
        ),
        best_practice=(
            'if the program mounts nothing, write `deny mount` (all paths); if it must\n'
            'mount somewhere but needs no other CAP_SYS_ADMIN, add `deny capability sys_admin`; or make\n'
            'the policy `default deny`.'
        ),
    ),
    'P090': Help(
        name='fmt-failed',
        anchor='p090-fmt-failed',
        text=(
            '`policyc fmt` re-parses what it prints and compares it with the input (syntax tree and\n'
            'comments); this error means they differed, a formatter bug. The file is left unchanged.'
        ),
        anti_pattern='none on your side: report the file.',
        best_practice='keep the file as it is and report it.',
    ),
    'W101': Help(
        name='duplicate-rule',
        anchor='w101-duplicate-rule',
        text=(
            'The same rule (decision, family, operations, objects) twice in one policy. Reported on the\n'
            'later copy (or on the copy written in the policy when the other comes from a ruleset); a\n'
            'ruleset used twice is reported once at its second `use`.'
        ),
        anti_pattern='`allow file read "/srv/**"` on two lines.',
        best_practice='one copy.',
    ),
    'W102': Help(
        name='shadowed-rule',
        anchor='w102-shadowed-rule',
        text=(
            'A rule, or one path of a rule, that broader rules of the same decision already cover for\n'
            'every operation it names (for example `allow file read "/srv/www/index.html"` under\n'
            '`allow file read "/srv/**"`). It changes no decision. Of rules that cover each other\n'
            'exactly, one is kept: the one with more operations, then more paths, then the first.'
        ),
        anti_pattern=(
            '```\n'
            'allow file read "/srv/**"\n'
            'allow file read "/srv/www/index.html"\n'
            '```'
        ),
        best_practice='keep the broad rule, drop the narrow one (or narrow the broad one).',
    ),
    'W103': Help(
        name='overridden-rule',
        anchor='w103-overridden-rule',
        text=(
            'A rule, or one path of a rule, that more severe rules cover completely: deny beats audit\n'
            'beats allow, so it never decides anything.'
        ),
        anti_pattern=(
            '```\n'
            'deny file write "/etc/**"\n'
            'allow file write "/etc/motd"     # looks like an exception; the deny wins\n'
            '```'
        ),
        best_practice=(
            'narrow the deny (`deny file write "/etc/{passwd,shadow,sudoers}"`), or drop\n'
            'the allow.'
        ),
    ),
    'W104': Help(
        name='unused-let',
        anchor='w104-unused-let',
        text='A variable nobody uses.',
        anti_pattern='`let logdir = "/var/log/nginx"` and then `"/var/log/nginx/*.log"` written out.',
        best_practice='use it (`"${logdir}/*.log"`) or remove it.',
    ),
    'W105': Help(
        name='listed-twice',
        anchor='w105-listed-twice',
        text='A name twice in one list.',
        anti_pattern='`allow capability setuid, setgid, setuid`.',
        best_practice='`allow capability setuid, setgid`.',
    ),
    'W106': Help(
        name='contradictory-rules',
        anchor='w106-contradictory-rules',
        text=(
            'Two decisions for the same operation on exactly the same objects. The more severe one\n'
            'wins whatever the order; the message says which.'
        ),
        anti_pattern='`allow file read "/etc/shadow"` and `deny file read "/etc/shadow"`.',
        best_practice='keep the rule you mean.',
    ),
    'W107': Help(
        name='redundant-allow',
        anchor='w107-redundant-allow',
        text=(
            'An `allow` rule in a `default allow` policy (the default when none is written). Only `deny`\n'
            'and `audit` change anything there. Rules from a ruleset are not reported.'
        ),
        anti_pattern=(
            '```\n'
            'policy tools {\n'
            '    subject exe "/usr/bin/make"\n'
            '    allow file read "/usr/include/**"\n'
            '}\n'
            '```'
        ),
        best_practice=(
            '`default deny` if only the allowed should be allowed; otherwise drop the\n'
            'allow rules.'
        ),
    ),
    'W108': Help(
        name='subject-matches-everything',
        anchor='w108-subject-matches-everything',
        text='An `exe` subject pattern that matches every program (`"/**"`).',
        anti_pattern='`subject exe "/**"`.',
        best_practice='`subject all`, which says the same (P030 treats both alike).',
    ),
    'W109': Help(
        name='needless-acknowledgement',
        anchor='w109-needless-acknowledgement',
        text=(
            '`acknowledge host-wide-deny` where nothing is acknowledged: the policy does not govern\n'
            'every process, is in `mode audit`, or denies nothing essential. A stale acknowledgement\n'
            'would hide the next real mistake.'
        ),
        anti_pattern='`acknowledge host-wide-deny` in a `subject exe` policy.',
        best_practice='remove it.',
    ),
    'W110': Help(
        name='limit-without-events',
        anchor='w110-limit-without-events',
        text=(
            'A `limit` on an `allow` rule or on `default allow`. Only `deny` and `audit` decisions send\n'
            'events; an allowed operation sends none, so the limit limits nothing.'
        ),
        anti_pattern='`allow file read "/srv/www/**" limit 100/s`.',
        best_practice='put the limit on the `deny` or `audit` rule whose events flood the log.',
    ),
    'W111': Help(
        name='bad-suppression',
        anchor='w111-bad-suppression',
        text=(
            'A `# policyc: ignore[...]` comment that does not work as written: it has no reason (then it\n'
            'suppresses nothing), it names an error (errors cannot be suppressed), an unknown code or\n'
            'W111 itself, or `policyc: ignore` is not followed by `[CODE,...]`. Reported at the marker.'
        ),
        anti_pattern=(
            '`allow file write "/etc/motd"   # policyc: ignore[W103]` (why is it intended?),\n'
            '`allow capability net_bind_servic   # policyc: ignore[P012] later`.'
        ),
        best_practice=(
            '`# policyc: ignore[W103] motd is rewritten by the image build`, with the\n'
            'reason a reviewer needs; fix errors, and remove a marker whose warning is gone.'
        ),
    ),
    'W112': Help(
        name='denies-policyc',
        anchor='w112-denies-policyc',
        text=(
            "A policy in `enforce` mode that governs policyc's own units or systemd, and denies them what\n"
            "policyc needs to run: its loader's `bpf(2)` (`policyc.service`, in `/policyc.slice`: every load\n"
            "and reload fails, at the next boot too) or systemd's writes to the units' cgroups (they cannot\n"
            'start). The usual cause is `subject all` (or the root cgroup, or an exe pattern that matches\n'
            'Python) with `protect policyc`, `deny bpf` or `default deny`. The loader and systemd are handed\n'
            'to the reference evaluator as the kernel sees them (the interpreter `/usr/bin/python3.11`,\n'
            'child of `/usr/lib/systemd/systemd`, in `/policyc.slice/policyc.service`), so whatever rule or\n'
            'default denies them is named. Reported at that rule (or the `default` line).'
        ),
        anti_pattern=(
            '`policy lockdown { subject all  protect policyc ... }`, or `except exe\n'
            '"/usr/bin/policyc"` (a pip-installed policyc runs as the Python interpreter: that exception\n'
            'never matches).'
        ),
        best_practice=(
            '`subject all except cgroup "/policyc.slice", exe "/usr/lib/systemd/systemd"`,\n'
            'and administer through the units (`systemctl restart policyc`, or `systemd-run\n'
            '--slice=policyc.slice policyc load ...`).'
        ),
    ),
    'W113': Help(
        name='transition-to-unknown-policy',
        anchor='w113-transition-to-unknown-policy',
        text=(
            '`as policy NAME` where no policy `NAME` is among the files checked. A policy of that name may be\n'
            'loaded from another build; if none is loaded when the program is started, the exec is denied\n'
            '(fail closed, reason `transition-unloaded` in the audit record), never run ungoverned.'
        ),
        anti_pattern="a typo in `NAME`, or the target policy's file left out of the check.",
        best_practice='check (and load) the file that defines `policy NAME` with this one.',
    ),
    'W114': Help(
        name='transition-overtaken',
        anchor='w114-transition-overtaken',
        text=(
            'An `as` exec rule, and for one of its programs an earlier rule of the same decision that also\n'
            'matches it (the first of equally severe rules decides) and says another transition, or none. The\n'
            "exec is decided by that rule: this rule's transition does not happen for that program."
        ),
        anti_pattern=(
            '`allow exec "/usr/bin/*"` and, below it, `allow exec "/usr/bin/backup" as policy\n'
            'backup`.'
        ),
        best_practice='the specific rule first.',
    ),
}
