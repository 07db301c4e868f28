"""Well-known weak passwords, and the audit of an image's stored hashes against them.

The list is written from common knowledge (the passwords that top every published leak
ranking, keyboard walks, and the defaults that vendors, appliances and cloud images ship with),
most likely first, because the audit has a time budget and stops where the budget ends. Each
account is also tried with its own name and a few variants of it (``admin``/``admin123``).

The audit is bounded: a pure-Python SHA-512 crypt costs about 6 ms at the default 5000 rounds,
and a yescrypt computed by ``mkpasswd`` about 50 ms, so :func:`audit_weak_passwords` spends at
most :data:`AUDIT_BUDGET_SECONDS` in total, root first, then the accounts a person logs in with,
and says for every account how many of its candidates it tried ("checked 44 of 213 common
passwords") and why it stopped. ``imageport check --all-passwords`` asks for the whole list
(:func:`audit_weak_passwords` with ``whole_list``): no time budget then, but still bounded:
:data:`MAX_AUDITED_ACCOUNTS` accounts, one try at most :data:`MAX_TRY_SECONDS` (a hash's cost
comes from the image), and :data:`WHOLE_LIST_MAX_SECONDS` in total.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.facts.password_hashes import (
    CryptHelper,
    Unverifiable,
    hash_scheme,
    verify_password,
)

#: Seconds one check spends on the audit, over all accounts: about 50 sha512-crypt tries (the
#: list is ordered most common first), so a whole check stays near one second.
AUDIT_BUDGET_SECONDS = 0.25
#: Accounts audited at most (root and login accounts come first).
MAX_AUDITED_ACCOUNTS = 64
#: Seconds one try may take (mkpasswd is stopped then): a hash's cost parameters are the
#: image's, so a try is bounded even when the whole list is asked for.
MAX_TRY_SECONDS = 2.0
#: The hard limit of an audit of the whole list (``--all-passwords``): a few accounts with
#: hashes take seconds (about 210 candidates at 6 to 50 ms each), but 64 accounts, or hashes
#: made costly on purpose, could take hours; past this the audit says what it did not try.
WHOLE_LIST_MAX_SECONDS = 600.0

WEAK_PASSWORDS: tuple[str, ...] = (
    # the top of every leak ranking
    "123456",
    "password",
    "12345678",
    "123456789",
    "12345",
    "1234567",
    "1234567890",
    "qwerty",
    "111111",
    "123123",
    "abc123",
    "password1",
    "1234",
    "000000",
    "iloveyou",
    "admin",
    "root",
    "toor",
    "changeme",
    "P@ssw0rd",
    "Passw0rd",
    "Passw0rd!",
    "P@ssword",
    "P@ssw0rd!",
    "Password1",
    "Password1!",
    "Password123",
    "Password@123",
    "password123",
    "Admin@123",
    "Admin123",
    "admin123",
    "Root@123",
    "root123",
    "Huawei@123",
    "Huawei12#$",
    "huawei",
    "Changeme_123",
    "Changeme123",
    "Changeme@123",
    "letmein",
    "welcome",
    "Welcome1",
    "Welcome@123",
    "Welcome123",
    "qwerty123",
    "qwertyuiop",
    "1q2w3e4r",
    "1qaz2wsx",
    "1qaz@WSX",
    "1QAZ2wsx",
    "zaq12wsx",
    "Zaq1@wsx",
    "q1w2e3r4",
    "qwe123",
    "Qwer1234",
    "Qwer@1234",
    "asdfgh",
    "asdf1234",
    "zxcvbnm",
    "a123456",
    "123qwe",
    "1q2w3e",
    "654321",
    "666666",
    "888888",
    "121212",
    "112233",
    "123321",
    "7777777",
    "987654321",
    "159753",
    "password!",
    "Password",
    "PASSWORD",
    "pass",
    "pass123",
    "passw0rd",
    "secret",
    "test",
    "test123",
    "Test@123",
    "testing",
    "guest",
    "user",
    "default",
    "system",
    "server",
    "linux",
    "Linux@123",
    "ubuntu",
    "debian",
    "centos",
    "fedora",
    "redhat",
    "suse",
    "opensuse",
    "kali",
    "raspberry",
    "vagrant",
    "docker",
    "oracle",
    "postgres",
    "mysql",
    "master",
    "monkey",
    "dragon",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "shadow",
    "superman",
    "michael",
    "trustno1",
    "starwars",
    "whatever",
    "freedom",
    "hello",
    "hello123",
    "love",
    "computer",
    "internet",
    "login",
    "access",
    "private",
    "temp",
    "temp123",
    "abcd1234",
    "Abcd1234",
    "Abcd@1234",
    "abcdef",
    "abc@123",
    "Abc@123",
    "Abc123!",
    "aa123456",
    "a1b2c3",
    "qazwsx",
    "1qazxsw2",
    "!QAZ2wsx",
    "!QAZ@WSX",
    "Aa123456",
    "Aa123456!",
    "Aa@123456",
    "Qq123456",
    "Asdf1234",
    "zxc123",
    "0987654321",
    # vendor, appliance and cloud-image defaults
    "ubnt",
    "alpine",
    "openstack",
    "cloud",
    "cloudadmin",
    "Cloud12#$",
    "Cloud@123",
    "Huawei@CLOUD8!",
    "Admin@9000",
    "Admin@storage",
    "Changeme_2023",
    "admin@123",
    "root@123",
    "Root123!",
    "rootroot",
    "adminadmin",
    "administrator",
    "Administrator",
    "manager",
    "support",
    "service",
    "operator",
    "supervisor",
    "cisco",
    "Cisco123",
    "calvin",
    "ChangeMe",
    "changeit",
    "VMware1!",
    "vmware",
    "nutanix/4u",
    "nutanix",
    "openwrt",
    "admin1",
    "admin1234",
    "root1234",
    "Pa$$w0rd",
    "Pa$$word",
    "p@ssw0rd",
    "p@ssword",
    "pa55word",
    "pa55w0rd",
    "Password01",
    "Password2023",
    "Password2024",
    "Password@2024",
    "Summer2024",
    "Winter2024",
    "Spring2024",
    "Autumn2024",
    "Qwerty123!",
    "Qwerty@123",
    "Init1234",
    "init",
    "setup",
    "install",
    "123456a",
    "12345a",
    "11111111",
    "00000000",
    "88888888",
    "12341234",
    "11223344",
    "147258369",
    "password12",
)


@dataclass(frozen=True, slots=True)
class AuditTarget:
    """One account's stored hash to audit."""

    user: str
    stored: str  #: the hash (without any lock prefix)
    source: str  #: where it was read, e.g. ``/etc/shadow:1``


@dataclass(frozen=True, slots=True)
class WeakMatch:
    """An account whose stored hash is one of the weak passwords."""

    target: AuditTarget
    password: str

    @property
    def masked(self) -> str:
        """The password with all but its first and last character hidden."""
        return mask(self.password)


@dataclass(frozen=True, slots=True)
class NotAudited:
    """An account (partly) not audited, and why."""

    target: AuditTarget
    reason: str
    #: Candidates tried (none matched), and how many there are for this account.
    tried: int
    of: int = 0
    #: The time ran out (the budget, or the whole list's hard limit): more time would help.
    out_of_time: bool = False

    def describe(self) -> str:
        """The account, where its hash is, how far the audit got and why it stopped, e.g.
        ``root [/etc/shadow:1]: checked 44 of 213 common passwords (sha512-crypt: time budget
        of 0.25 s used up)``."""
        return (
            f"{self.target.user} [{self.target.source}]: checked {self.tried} of {self.of} "
            f"common passwords ({self.reason})"
        )


@dataclass(frozen=True, slots=True)
class PasswordAudit:
    """What the audit found and what it left out."""

    matches: tuple[WeakMatch, ...]
    not_audited: tuple[NotAudited, ...]
    audited: tuple[AuditTarget, ...]  #: fully audited, no match


def mask(password: str) -> str:
    """``P*******!``: enough for the image's owner to recognise it, not to read it."""
    if len(password) <= 2:
        return "*" * len(password)
    return password[0] + "*" * (len(password) - 2) + password[-1]


def candidates(user: str) -> tuple[str, ...]:
    """The passwords tried for ``user``: variants of its name, then the built-in list."""
    own = (
        user,
        user + "123",
        user + "@123",
        user + "1234",
        user.capitalize() + "@123",
        user + user,
    )
    seen: set[str] = set()
    out: list[str] = []
    for word in (*own, *WEAK_PASSWORDS):
        if word and word not in seen:
            seen.add(word)
            out.append(word)
    return tuple(out)


def audit_weak_passwords(
    targets: Iterable[AuditTarget],
    *,
    helper: CryptHelper | None,
    budget: float = AUDIT_BUDGET_SECONDS,
    whole_list: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> PasswordAudit:
    """Try :func:`candidates` against each target's hash, in the given order, within ``budget``
    seconds in total. Hashes that cannot be computed are reported, never guessed.

    With ``whole_list`` the budget is ignored and every candidate is tried, within the hard
    limit of :data:`WHOLE_LIST_MAX_SECONDS` (and :data:`MAX_AUDITED_ACCOUNTS`)."""
    if whole_list:
        budget = WHOLE_LIST_MAX_SECONDS
    deadline = clock() + budget
    out_of_time = (
        f"hard limit of {budget:g} s for the whole list reached"
        if whole_list
        else f"time budget of {budget:g} s used up"
    )
    matches: list[WeakMatch] = []
    skipped: list[NotAudited] = []
    audited: list[AuditTarget] = []
    for index, target in enumerate(targets):
        words = candidates(target.user)
        if index >= MAX_AUDITED_ACCOUNTS:
            reason = f"more than {MAX_AUDITED_ACCOUNTS} accounts"
            skipped.append(NotAudited(target, reason, 0, len(words)))
            continue
        tried = 0
        reason = ""
        timed_out = False
        for word in words:
            remaining = deadline - clock()
            if remaining <= 0:
                reason, timed_out = out_of_time, True
                break
            timeout = min(remaining, MAX_TRY_SECONDS)
            try:
                hit = verify_password(word, target.stored, helper=helper, timeout=timeout)
            except Unverifiable as exc:
                # mkpasswd stopped because the time ran out is not a hash it cannot compute
                timed_out = timeout == remaining and clock() >= deadline
                reason = out_of_time if timed_out else str(exc)
                break
            except ImageportError as exc:
                reason = f"hash not usable ({exc})"
                break
            tried += 1
            if hit:
                matches.append(WeakMatch(target, word))
                break
        else:
            audited.append(target)
            continue
        if reason:
            scheme = hash_scheme(target.stored).value
            skipped.append(NotAudited(target, f"{scheme}: {reason}", tried, len(words), timed_out))
    return PasswordAudit(tuple(matches), tuple(skipped), tuple(audited))
