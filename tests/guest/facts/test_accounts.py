"""Account facts: the passwd/shadow/sshd_config parsers on strings, read_accounts on a disk
built with mkfs.ext4, and the weak-password audit with its time budget."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from imageport.disk.raw import RawDisk
from imageport.guest.facts.accounts import (
    PasswordState,
    classify_password,
    count_keys,
    parse_passwd,
    parse_shadow,
    read_accounts,
    split_directive,
)
from imageport.guest.facts.inspect import inspect_guest
from imageport.guest.facts.password_hashes import CryptHelper, HashScheme
from imageport.guest.facts.weak_passwords import (
    MAX_TRY_SECONDS,
    WEAK_PASSWORDS,
    WHOLE_LIST_MAX_SECONDS,
    AuditTarget,
    audit_weak_passwords,
    candidates,
    mask,
)
from imageport.source import FileSource
from support import guest_fixtures as gf
from support.guest_tools import sha512_crypt

USERS_FILE = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
+::::::
broken:x:notanumber:1::/:/bin/sh
short:x:1
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:
svc:x:998:998::/var/lib/svc:/bin/false
old:$1$abcdefgh$Fw5NVfhC1YPBtDjZ/Mmbi/:1002:1002::/home/old:/bin/sh
"""
SHADOW = """root:!$6$fixedsalt$abc:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
alice:$y$j9T$salt$hash:19700:0:99999:7:::
bob::19700:0:99999:7:::
alice:second-entry-ignored:1::::::
"""
SSHD_CONFIG = """# top comment
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin yes
PasswordAuthentication yes
Match User bob
    AuthorizedKeysFile /nowhere
"""


def rich_guest() -> gf.Tree:
    return {
        "etc/passwd": USERS_FILE,
        "etc/shadow": SHADOW,
        "home/alice/.ssh/authorized_keys": "# keys\nssh-ed25519 AAAAC3 alice@a\n\n"
        "ssh-rsa AAAAB3 alice@b\n",
        "root/.ssh/authorized_keys": "ssh-ed25519 AAAAC3 admin@x\n",
        "etc/ssh/sshd_config": SSHD_CONFIG,
        "etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication=no\n",
        "etc/ssh/sshd_config.d/10-root.conf": "permitrootlogin   prohibit-password\n",
        "etc/ssh/sshd_config.d/README": "PermitRootLogin no\n",
        "usr/sbin/sshd": b"\x7fELF" + bytes(60),
        "etc/systemd/system/multi-user.target.wants/ssh.service": gf.Symlink(
            "/lib/systemd/system/ssh.service"
        ),
        "usr/lib/systemd/system-preset/90-default.preset": "enable sshd.service\ndisable *\n",
    }


def test_passwd_lines_are_parsed_and_odd_lines_skipped() -> None:
    entries = parse_passwd(USERS_FILE)
    assert [(e.name, e.uid, e.shell, e.line_no) for e in entries] == [
        ("root", 0, "/bin/bash", 1),
        ("daemon", 1, "/usr/sbin/nologin", 2),
        ("alice", 1000, "/bin/bash", 6),
        ("bob", 1001, "", 7),
        ("svc", 998, "/bin/false", 8),
        ("old", 1002, "/bin/sh", 9),
    ]
    assert len(parse_passwd(USERS_FILE, limit=2)) == 2
    assert parse_passwd("root:x:99999999999:0::/:/bin/sh\n") == []


def test_shadow_first_entry_wins() -> None:
    shadow = parse_shadow(SHADOW)
    assert shadow["alice"] == ("$y$j9T$salt$hash", 3)
    assert shadow["bob"] == ("", 4)


@pytest.mark.parametrize(
    ("field", "state", "scheme", "marker"),
    [
        ("", PasswordState.EMPTY, None, ""),
        ("*", PasswordState.NONE, None, "*"),
        ("!", PasswordState.NONE, None, "!"),
        ("!!", PasswordState.NONE, None, "!!"),
        ("!*", PasswordState.NONE, None, "!*"),
        ("*LK*", PasswordState.NONE, None, "*LK*"),
        ("x", PasswordState.NONE, None, "x"),
        ("!$6$s$h", PasswordState.LOCKED, HashScheme.SHA512, "!"),
        ("!!$y$j9T$s$h", PasswordState.LOCKED, HashScheme.YESCRYPT, "!!"),
        ("$y$j9T$s$h", PasswordState.SET, HashScheme.YESCRYPT, ""),
        ("$2b$10$" + "a" * 53, PasswordState.SET, HashScheme.BCRYPT, ""),
        ("abJnggxhB/yWI", PasswordState.SET, HashScheme.DES, ""),
        ("$argon2id$v=19$x", PasswordState.SET, HashScheme.UNKNOWN, ""),
    ],
)
def test_password_fields_are_classified(
    field: str, state: PasswordState, scheme: HashScheme | None, marker: str
) -> None:
    pw = classify_password(field, "/etc/shadow:1")
    assert (pw.state, pw.scheme, pw.marker) == (state, scheme, marker)
    assert "$" not in pw.describe() and "$" not in repr(pw)  # hashes are never printed


def test_sshd_directives_and_key_lines() -> None:
    assert split_directive("  PermitRootLogin   no ") == ("permitrootlogin", "no")
    assert split_directive("PasswordAuthentication=yes") == ("passwordauthentication", "yes")
    assert split_directive("PasswordAuthentication = yes") == ("passwordauthentication", "yes")
    assert split_directive('AuthorizedKeysFile "/etc/keys/%u"') == (
        "authorizedkeysfile",
        "/etc/keys/%u",
    )
    assert split_directive("# PermitRootLogin yes") is None
    assert split_directive("   ") is None
    assert count_keys("# c\n\nssh-rsa A b\n  # x\nssh-ed25519 B c\n") == 2


def test_read_accounts_on_a_guest_disk() -> None:
    disk = gf.build_guest("acct-rich", root=rich_guest())
    with FileSource(disk) as src:
        guest = inspect_guest(RawDisk(src))
        acc = guest.derive(read_accounts)
        assert guest.derive(read_accounts) is acc  # memoised
    by_name = {a.name: a for a in acc.accounts}
    assert list(by_name) == ["root", "daemon", "alice", "bob", "svc", "old"]
    root = by_name["root"]
    assert (root.password.state, root.password.scheme) == (PasswordState.LOCKED, HashScheme.SHA512)
    assert root.password.source == "/etc/shadow:1"
    assert [(k.path, k.keys) for k in root.key_files] == [("/root/.ssh/authorized_keys", 1)]
    alice = by_name["alice"]
    assert (alice.password.state, alice.password.scheme, alice.keys) == (
        PasswordState.SET,
        HashScheme.YESCRYPT,
        2,
    )
    assert by_name["bob"].password.state is PasswordState.EMPTY and by_name["bob"].login_shell
    assert not by_name["daemon"].login_shell and not by_name["svc"].login_shell
    assert by_name["svc"].password.state is PasswordState.MISSING
    assert by_name["old"].password.source == "/etc/passwd:9"  # the hash is in passwd itself
    assert by_name["old"].password.scheme is HashScheme.MD5
    sshd = acc.sshd
    assert sshd.program == "/usr/sbin/sshd"
    assert sshd.enabled_by == ("/etc/systemd/system/multi-user.target.wants/ssh.service",)
    assert sshd.preset == "/usr/lib/systemd/system-preset/90-default.preset:1: enable sshd.service"
    # the includes come first (at the Include line), in lexical order; README is not *.conf
    root_login = sshd.setting("PermitRootLogin")
    assert root_login is not None and root_login.value == "prohibit-password"
    assert root_login.source == "/etc/ssh/sshd_config.d/10-root.conf:1"
    pw_auth = sshd.setting("passwordauthentication")
    assert pw_auth is not None and (pw_auth.value, pw_auth.source) == (
        "no",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf:1",
    )
    assert sshd.setting("authorizedkeysfile") is None  # only inside Match
    assert acc.cloud_init is None and acc.problems == ()


def test_base_guest_has_no_shadow() -> None:
    with FileSource(gf.build_guest("base")) as src:
        acc = inspect_guest(RawDisk(src)).derive(read_accounts)
    assert acc.root is not None and acc.root.password.state is PasswordState.MISSING
    assert acc.sshd.program is None and acc.sshd.enabled_by == () and acc.sshd.settings == {}


# --- the weak-password audit ------------------------------------------------------------------


def test_the_list_is_about_200_distinct_passwords() -> None:
    assert 180 <= len(WEAK_PASSWORDS) <= 260
    assert len(set(WEAK_PASSWORDS)) == len(WEAK_PASSWORDS)
    for word in (
        "123456",
        "password",
        "Huawei@123",
        "Admin@123",
        "root",
        "toor",
        "changeme",
        "P@ssw0rd",
        "Passw0rd!",
        "qwerty",
        "letmein",
    ):
        assert word in WEAK_PASSWORDS
    assert candidates("admin")[:3] == ("admin", "admin123", "admin@123")
    assert mask("123456") == "1****6" and mask("ab") == "**"


def test_audit_finds_weak_hashes_and_says_what_it_left_out() -> None:
    targets = [
        AuditTarget("root", sha512_crypt("123456", "AbCdEfGh"), "/etc/shadow:1"),
        AuditTarget("admin", "$1$abcdefgh$" + "x" * 22, "/etc/shadow:2"),  # strong: no match
        AuditTarget("deploy", "$y$j9T$abc$def", "/etc/shadow:3"),
        AuditTarget("x", "$6$rounds=5000000$s$h", "/etc/shadow:4"),
    ]
    audit = audit_weak_passwords(targets, helper=None, budget=30.0)
    assert [(m.target.user, m.masked) for m in audit.matches] == [("root", "1****6")]
    assert [t.user for t in audit.audited] == ["admin"]
    reasons = {n.target.user: n.reason for n in audit.not_audited}
    assert reasons["deploy"].startswith("yescrypt: ") and "mkpasswd" in reasons["deploy"]
    assert "rounds" in reasons["x"]


def test_audit_stops_at_its_time_budget() -> None:
    ticks = itertools.count()
    targets = [
        AuditTarget("root", "$1$abcdefgh$" + "x" * 22, "/etc/shadow:1"),
        AuditTarget("alice", "$1$abcdefgh$" + "y" * 22, "/etc/shadow:2"),
    ]
    audit = audit_weak_passwords(
        targets, helper=None, budget=10.0, clock=lambda: float(next(ticks))
    )
    assert audit.matches == () and audit.audited == ()
    (root, alice) = audit.not_audited
    assert root.tried == 9 and "time budget of 10 s used up" in root.reason
    assert alice.tried == 0
    # the report says how far it got, in words: "checked 9 of 213 common passwords"
    assert root.of == len(candidates("root")) and alice.of == len(candidates("alice"))
    assert root.out_of_time and alice.out_of_time
    assert root.describe() == (
        f"root [/etc/shadow:1]: checked 9 of {root.of} common passwords "
        "(md5-crypt: time budget of 10 s used up)"
    )


class _SlowHelper(CryptHelper):
    """A helper that records the timeout of each try and computes nothing (a hash too costly)."""

    def __init__(self) -> None:
        super().__init__("mkpasswd")
        self.timeouts: list[float] = []

    def compute(self, password: bytes, stored: str, timeout: float) -> str | None:
        self.timeouts.append(timeout)
        return None


def test_the_whole_list_ignores_the_budget_but_keeps_its_hard_limits() -> None:
    strong = [AuditTarget("root", "$1$abcdefgh$" + "x" * 22, "/etc/shadow:1")]
    ticks = itertools.count()
    audit = audit_weak_passwords(
        strong, helper=None, budget=10.0, whole_list=True, clock=lambda: float(next(ticks))
    )
    assert audit.not_audited == () and [t.user for t in audit.audited] == ["root"]
    # a hostile image cannot keep it running: 60 s a tick reaches the hard limit of 600 s
    slow = itertools.count(step=60)
    audit = audit_weak_passwords(
        strong, helper=None, whole_list=True, clock=lambda: float(next(slow))
    )
    (root,) = audit.not_audited
    assert root.out_of_time and 0 < root.tried < root.of
    assert f"hard limit of {WHOLE_LIST_MAX_SECONDS:g} s for the whole list reached" in (
        root.describe()
    )
    # and one try is stopped after MAX_TRY_SECONDS, not after what is left of the limit
    helper = _SlowHelper()
    audit = audit_weak_passwords(
        [AuditTarget("bob", "$y$j9T$abc$def", "/etc/shadow:5")], helper=helper, whole_list=True
    )
    assert helper.timeouts == [MAX_TRY_SECONDS]
    (bob,) = audit.not_audited
    assert not bob.out_of_time and "could not compute" in bob.reason and bob.tried == 0


def test_a_helper_stopped_by_the_budget_is_out_of_time_not_unverifiable() -> None:
    ticks = iter([0.0, 0.0, 1.0])  # the start, before the try, after it: past the budget
    helper = _SlowHelper()
    audit = audit_weak_passwords(
        [AuditTarget("bob", "$y$j9T$abc$def", "/etc/shadow:5")],
        helper=helper,
        budget=0.5,
        clock=lambda: next(ticks),
    )
    (bob,) = audit.not_audited
    assert helper.timeouts == [0.5]
    assert bob.out_of_time and "time budget of 0.5 s used up" in bob.reason


def test_audit_uses_mkpasswd_for_yescrypt() -> None:
    helper = CryptHelper.find()
    if helper is None:
        pytest.fail("mkpasswd is not installed; run scripts/install --test (package whois)")
    stored = subprocess.run(
        [helper.program, "-s", "-m", "yescrypt"],
        input="password\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    audit = audit_weak_passwords(
        [AuditTarget("bob", stored, "/etc/shadow:5")], helper=helper, budget=10.0
    )
    assert [m.masked for m in audit.matches] == ["p******d"]
