"""IMG-LOGIN, IMG-ROOT-PASSWORD and IMG-PASSWORD-STRENGTH through the check, on guest disks
built with mkfs.ext4 whose /etc/shadow hashes come from ``openssl passwd``."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from imageport.findings import Finding, Severity
from imageport.guest.facts.weak_passwords import AUDIT_BUDGET_SECONDS, PasswordAudit, candidates
from imageport.rules import accounts as accounts_rules
from imageport.rules.accounts import (
    LoginRule,
    PasswordStrengthRule,
    RootPasswordRule,
    password_problems,
)
from imageport.rules.base import CheckOptions
from imageport.rules.catalogue import RULES
from imageport.service.tools.check import check_image
from support import guest_fixtures as gf
from support.guest_tools import sha512_crypt

#: A strong password (random, made for this test) and a weak one.
STRONG = "3nVF6X-gtt2lK.Fr1"
WEAK = "123456"
ACCOUNT_RULES = (LoginRule(), RootPasswordRule(), PasswordStrengthRule())
SSHD_ENABLED: gf.Tree = {
    "usr/sbin/sshd": b"\x7fELF" + bytes(60),
    "lib/systemd/system/ssh.service": "[Service]\nExecStart=/usr/sbin/sshd -D\n",
    "etc/systemd/system/multi-user.target.wants/ssh.service": gf.Symlink(
        "/lib/systemd/system/ssh.service"
    ),
}
ALICE_WITH_KEY: gf.Tree = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    "home/alice/.ssh/authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA alice@laptop\n",
}


def _shadow(root_field: str, *more: str) -> str:
    return "".join(f"{line}:19700:0:99999:7:::\n" for line in (f"root:{root_field}", *more))


def strong_root() -> Path:
    return gf.build_guest(
        "acct-strong", root={"etc/shadow": _shadow(sha512_crypt(STRONG, "Qm4vTz8w"))}
    )


#: A sha512-crypt hash at 999999 rounds (not of any listed password): one try takes about a
#: second here, longer than the audit's whole budget, so the audit stops after one try.
COSTLY_HASH = "$6$rounds=999999$Qm4vTz8w$" + "A" * 86


def costly_root() -> Path:
    return gf.build_guest("acct-costly", root={"etc/shadow": _shadow(COSTLY_HASH)})


def weak_root() -> Path:
    return gf.build_guest("acct-weak", root={"etc/shadow": _shadow(sha512_crypt(WEAK, "saltsalt"))})


def locked_root_with_keys(*, sshd: bool = True) -> Path:
    tree = {
        **ALICE_WITH_KEY,
        **(SSHD_ENABLED if sshd else {}),
        "etc/shadow": _shadow("!", "alice:*"),
    }
    return gf.build_guest("acct-keys" if sshd else "acct-keys-nosshd", root=tree)


def no_login() -> Path:
    return gf.build_guest("acct-none", root={"etc/shadow": _shadow("*")})


def cloud_init_only() -> Path:
    return gf.build_guest(
        "acct-cloudinit",
        root={"etc/shadow": _shadow("*"), "usr/bin/cloud-init": "#!/usr/bin/python3\n"},
    )


def empty_root() -> Path:
    return gf.build_guest("acct-empty", root={"etc/shadow": _shadow("")})


def test_the_catalogue_lists_the_account_rules() -> None:
    assert {r.id for r in ACCOUNT_RULES} <= {r.id for r in RULES}


@functools.cache
def _findings(path: Path, options: CheckOptions | None) -> tuple[Finding, ...]:
    # the audit spends up to its 1 s budget on a strong hash: check each disk once
    return check_image(path, options).findings


def findings(path: Path, rule_id: str, options: CheckOptions | None = None) -> list[Finding]:
    return [f for f in _findings(path, options) if f.rule_id == rule_id]


def text(f: Finding) -> str:
    return f.message + " | " + " | ".join(f.evidence) + " | " + f.advice


# --- IMG-LOGIN --------------------------------------------------------------------------------


def test_no_password_no_key_no_cloud_init_fails_img_login() -> None:
    (f,) = findings(no_login(), "IMG-LOGIN")
    assert f.severity is Severity.ERROR
    msg = text(f)
    assert "No way to log in" in msg
    assert "root (uid 0, shell /bin/bash): password no password ('*') [/etc/shadow:1]" in msg
    assert "cloud-init: not installed" in msg and "sshd: not installed" in msg
    assert "apt-get install cloud-init" in f.advice  # the fixture is Debian


def test_a_key_without_sshd_is_no_way_in() -> None:
    (f,) = findings(locked_root_with_keys(sshd=False), "IMG-LOGIN")
    msg = text(f)
    assert "SSH keys of alice: /home/alice/.ssh/authorized_keys (1 keys)" in msg
    assert "started at boot by: nothing" in msg and "systemctl enable ssh" in msg
    assert "AAAAC3" not in msg  # keys are counted, not quoted


@pytest.mark.parametrize("build", [strong_root, locked_root_with_keys, cloud_init_only, empty_root])
def test_a_password_a_key_with_sshd_or_cloud_init_is_a_way_in(build: object) -> None:
    assert callable(build)
    assert findings(build(), "IMG-LOGIN") == []


# --- IMG-ROOT-PASSWORD ------------------------------------------------------------------------


def test_a_locked_root_is_a_warning_and_an_error_when_uninitialized() -> None:
    disk = locked_root_with_keys()
    (f,) = findings(disk, "IMG-ROOT-PASSWORD")
    assert f.severity is Severity.WARNING
    assert "root cannot log in with a password: it is no password ('!')" in f.message
    assert f.evidence == ("/etc/shadow:1: root password no password ('!')",)
    (f,) = findings(disk, "IMG-ROOT-PASSWORD", CheckOptions(uninitialized=True))
    assert f.severity is Severity.ERROR and "uninitialized" in f.message


def test_an_empty_root_password_is_an_error() -> None:
    (f,) = findings(empty_root(), "IMG-ROOT-PASSWORD")
    assert f.severity is Severity.ERROR and "empty password" in f.message
    (g,) = findings(empty_root(), "IMG-PASSWORD-STRENGTH")
    assert g.severity is Severity.ERROR and g.message.startswith("root has an empty password")


def test_a_set_root_password_passes() -> None:
    found = _findings(strong_root(), None)
    assert [f for f in found if f.rule_id == "IMG-ROOT-PASSWORD"] == []
    assert all(f.severity is not Severity.ERROR for f in found), found


# --- IMG-PASSWORD-STRENGTH --------------------------------------------------------------------


def test_a_weak_stored_root_password_is_found_and_masked() -> None:
    (f,) = findings(weak_root(), "IMG-PASSWORD-STRENGTH")
    assert f.severity is Severity.ERROR
    assert f.message == "root's password is a well-known weak password: 1****6."
    assert f.evidence == (
        "/etc/shadow:1: sha512-crypt hash of a password on imageport's weak-password list",
    )


def test_a_strong_stored_password_is_not_reported_as_weak() -> None:
    found = findings(strong_root(), "IMG-PASSWORD-STRENGTH")
    # auditing all ~220 candidates at 5000 rounds may not fit in the budget: then it says so
    assert all(f.severity is Severity.INFO and "time budget" in text(f) for f in found), found


def test_when_the_budget_ends_the_report_says_how_far_the_audit_got() -> None:
    (f,) = findings(costly_root(), "IMG-PASSWORD-STRENGTH")
    assert f.severity is Severity.INFO
    assert f.message == (
        "The time ran out before every stored password was compared with the whole list of "
        "common passwords."
    )
    of = len(candidates("root"))
    assert f.evidence == (
        f"root [/etc/shadow:1]: checked 1 of {of} common passwords "
        f"(sha512-crypt: time budget of {AUDIT_BUDGET_SECONDS:g} s used up)",
    )
    assert "imageport check --all-passwords" in f.advice and "mkpasswd" not in f.advice


def test_all_passwords_runs_the_whole_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # a strong hash at the default 5000 rounds: the whole list takes a second or two, and
    # nothing is left unaudited
    assert findings(strong_root(), "IMG-PASSWORD-STRENGTH", CheckOptions(all_passwords=True)) == []
    # the option reaches the audit (and only the option: the default keeps the budget)
    seen: list[bool] = []

    def audit(targets: object, *, helper: object, whole_list: bool = False) -> PasswordAudit:
        seen.append(whole_list)
        return PasswordAudit((), (), ())

    monkeypatch.setattr(accounts_rules, "audit_weak_passwords", audit)
    for options in (CheckOptions(), CheckOptions(all_passwords=True)):
        check_image(strong_root(), options)
    assert seen == [False, True]


def test_the_supplied_password_is_checked_and_compared_with_root() -> None:
    disk = strong_root()
    same = findings(disk, "IMG-PASSWORD-STRENGTH", CheckOptions(password=STRONG))
    assert all(f.severity is Severity.INFO for f in same)
    found = findings(disk, "IMG-PASSWORD-STRENGTH", CheckOptions(password="abc123"))  # noqa: S106
    rule, differs = (f for f in found if f.severity is not Severity.INFO)
    assert rule.severity is Severity.ERROR
    assert rule.evidence == (
        "it has 6 characters, fewer than 8",
        "it has no upper-case letter",
        "it has no special character from !@$%^-_=+[{}]:,./?",
    )
    assert differs.severity is Severity.WARNING and "root password differs" in differs.message
    assert all("abc123" not in text(f) for f in found)  # the password is never echoed


def test_password_classes() -> None:
    assert password_problems("Abcdef1!") == []
    assert password_problems("Huawei@123") == []
    assert password_problems("abcdefgh") == [
        "it has no upper-case letter",
        "it has no digit",
        "it has no special character from !@$%^-_=+[{}]:,./?",
    ]
    assert password_problems("Abcdef1#!") == [
        "it has 1 character(s) outside letters, digits and !@$%^-_=+[{}]:,./?"
    ]
    assert "it has no upper-case letter" in password_problems("ÄBCDEFG1!x".lower())
