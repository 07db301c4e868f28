"""Rules about logging in to servers made from the image: a way in, root's password, strength.

They judge :class:`~imageport.guest.facts.accounts.AccountFacts` (read once per check). Passwords
and hashes are never printed: a weak password found in the image is shown masked (``1****6``), and a
password the user supplies is only described by the character classes it lacks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from imageport.errors import ImageportError
from imageport.findings import Finding, Severity
from imageport.guest.facts.accounts import Account, AccountFacts, PasswordState, read_accounts
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.password_hashes import (
    CryptHelper,
    HashScheme,
    Unverifiable,
    verify_password,
)
from imageport.guest.facts.weak_passwords import AuditTarget, NotAudited, audit_weak_passwords
from imageport.rules.base import ImageFacts, Rule

#: Special characters the platform accepts in an initial password.
SPECIALS = "!@$%^-_=+[{}]:,./?"
MIN_PASSWORD_LENGTH = 8
#: Accounts listed in one finding's evidence.
MAX_LISTED = 10
#: Seconds allowed to compare the supplied password with root's hash through mkpasswd.
COMPARE_TIMEOUT = 2.0

_ACCOUNT_FILES = ("/etc/passwd:", "/etc/shadow:")
"""Prefixes of the :attr:`AccountFacts.unreadable` entries that leave no account usable."""
_INSTALL = {
    "debian": "apt-get install cloud-init",
    "rhel": "yum install cloud-init",
    "suse": "zypper install cloud-init",
}
_SSH_UNIT = {"debian": "ssh", "rhel": "sshd", "suse": "sshd"}


def _guest_accounts(facts: ImageFacts) -> tuple[GuestFacts, AccountFacts] | None:
    guest = facts.installed_guest
    return None if guest is None else (guest, guest.derive(read_accounts))


def _can_log_in(account: Account) -> bool:
    return account.login_shell


def _line(account: Account) -> str:
    return (
        f"{account.name} (uid {account.uid}, shell {account.shell or '/bin/sh'}): "
        f"password {account.password.describe()} [{account.password.source}]"
    )


class LoginRule(Rule):
    """What it checks: some way to log in to a server made from the image exists: a usable
    password for root or for an account with a login shell; or an ``authorized_keys`` file with
    keys for such an account while sshd is installed and enabled at boot (for root, not with
    ``PermitRootLogin no``); or cloud-init installed (it injects the key or password chosen when
    the server is created).

    Why it matters: without one, nobody can log in to the server, not even at the console, and
    the image has to be fixed offline and imported again.

    How to fix: install cloud-init (``apt-get``/``yum``/``zypper install cloud-init``), or set
    a root password (``passwd root``), or put a public key in ``~/.ssh/authorized_keys`` of a
    login account and enable sshd (``systemctl enable ssh`` on Debian/Ubuntu, ``sshd``
    elsewhere), then export the image again.

    ``/etc/passwd`` and ``/etc/shadow`` must be readable: when one is missing (passwd), a
    dangling symbolic link, a symbolic link loop, a directory or too large, nobody can log in
    whatever else the image has, and that is reported naming the file; an ``sshd_config`` that
    cannot be read stops sshd, so keys do not count then.

    Example: root locked (``!`` in ``/etc/shadow``), no keys and no cloud-init reports "No way
    to log in", listing each account's password state; ``/etc/passwd`` linked to a file that
    does not exist reports "Nobody can log in" naming it.
    """

    id = "IMG-LOGIN"
    severity = Severity.ERROR
    title = "A way to log in to servers made from the image must exist"
    advice = "Install cloud-init, or set a root password, or add an SSH key and enable sshd."
    title_zh = "必须有办法登录由该镜像创建的云服务器"
    advice_zh = "安装 cloud-init，或设置 root 密码，或添加 SSH 密钥并启用 sshd。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        found = _guest_accounts(facts)
        if found is None:
            return
        guest, acc = found
        accounts_unread = [u for u in acc.unreadable if u.startswith(_ACCOUNT_FILES)]
        no_passwd = not acc.accounts and "/etc/passwd: not found" in acc.problems
        if accounts_unread or no_passwd:
            yield self.found(
                "Nobody can log in: the guest's account files cannot be read, so neither "
                "logins nor cloud-init can use them.",
                *(accounts_unread or ["/etc/passwd: not found"]),
                *(f"problem: {p}" for p in acc.problems if p not in accounts_unread),
                advice="Restore /etc/passwd and /etc/shadow as regular files (a symbolic link "
                "must point at an existing file inside the guest), then export the image "
                "again.",
            )
            return
        if acc.cloud_init is not None:
            return
        people = [a for a in acc.accounts if _can_log_in(a)]
        if any(a.password.usable for a in people):
            return
        sshd = acc.sshd
        sshd_unread = [u for u in acc.unreadable if not u.startswith(_ACCOUNT_FILES)]
        sshd_ok = sshd.program is not None and bool(sshd.enabled_by) and not sshd_unread
        root_login = sshd.setting("permitrootlogin")
        root_keys_refused = root_login is not None and root_login.value.lower() == "no"
        keyed = [a for a in people if a.keys > 0]
        if sshd_ok and any(a.uid != 0 or not root_keys_refused for a in keyed):
            return
        family = guest.family
        evidence = [_line(a) for a in people[:MAX_LISTED]] or ["/etc/passwd: no login accounts"]
        if len(people) > MAX_LISTED:
            evidence.append(f"... and {len(people) - MAX_LISTED} more login accounts")
        for a in keyed[:MAX_LISTED]:
            paths = ", ".join(
                f"{k.path} ({k.keys if k.keys is not None else '?'} keys)" for k in a.key_files
            )
            evidence.append(f"SSH keys of {a.name}: {paths}")
        if not keyed:
            evidence.append("SSH keys: no authorized_keys file with keys for a login account")
        evidence.append(
            f"sshd: {sshd.program or 'not installed'}; started at boot by: "
            f"{', '.join(sshd.enabled_by) or 'nothing'}"
            + (f"; preset: {sshd.preset}" if sshd.preset else "")
        )
        evidence += [f"sshd cannot start: {u}" for u in sshd_unread]
        if root_keys_refused and root_login is not None:
            evidence.append(f"{root_login.source}: PermitRootLogin {root_login.value}")
        evidence.append("cloud-init: not installed (/usr/bin/cloud-init not found)")
        evidence += [f"problem: {p}" for p in acc.problems]
        install = _INSTALL.get(family, "install cloud-init with the package manager")
        unit = _SSH_UNIT.get(family, "sshd")
        yield self.found(
            "No way to log in: no account has a usable password, no SSH key can be used, and "
            "cloud-init is not installed to inject one.",
            *evidence,
            advice=f"On the source machine run `{install}` (recommended: it injects the key "
            f"or password chosen at server creation), or set a root password with `passwd "
            f"root`, or add a key to ~/.ssh/authorized_keys and `systemctl enable {unit}`; "
            "then export the image again.",
        )


class RootPasswordRule(Rule):
    """What it checks: the ``root`` account exists and has a usable password in
    ``/etc/shadow``: not locked (``!``), not unset (``*``, ``!!``) and not empty; and that
    the hash is not of a weak type (DES or md5-crypt). For images registered as uninitialized
    (``--uninitialized``) an unusable root password is an error.

    Why it matters: an uninitialized image is fixed by logging in at the server's console,
    which needs root's password. An empty root password lets anyone log in as root; DES and
    md5-crypt hashes are cracked in hours.

    How to fix: on the source machine run ``passwd root`` (with the system's default hash type:
    yescrypt or sha512-crypt), then export the image again.

    Example: ``root:!:19700:0:99999:7:::`` in ``/etc/shadow`` reports "root's password is
    locked".
    """

    id = "IMG-ROOT-PASSWORD"
    severity = Severity.WARNING
    title = "root must exist and have a usable password"
    advice = "Set root's password with `passwd root` on the source machine and export again."
    title_zh = "root 用户必须存在且有可用的密码"
    advice_zh = "在源机器上用 `passwd root` 设置 root 密码，然后重新导出。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        found = _guest_accounts(facts)
        if found is None:
            return
        _, acc = found
        uninitialized = facts.options.uninitialized
        missing_severity = Severity.ERROR if uninitialized else Severity.WARNING
        root = acc.root
        if root is None:
            yield self.found(
                "There is no root account in /etc/passwd.",
                *(f"problem: {p}" for p in acc.problems),
                severity=missing_severity,
                advice="Restore the root line of /etc/passwd (`root:x:0:0:root:"
                "/root:/bin/bash`) and set its password with `passwd root`.",
            )
            return
        pw = root.password
        where = f"{pw.source}: root password {pw.describe()}"
        if pw.state is PasswordState.EMPTY:
            yield self.found(
                "root has an empty password: anyone at the console (and over SSH where "
                "empty passwords are permitted) can log in as root.",
                where,
                severity=Severity.ERROR,
                advice="Set a strong root password with `passwd root`, or lock it with "
                "`passwd -l root` if logins use keys or cloud-init.",
            )
        elif pw.state is not PasswordState.SET:
            why = " (needed to fix an uninitialized image at the console)" if uninitialized else ""
            yield self.found(
                f"root cannot log in with a password: it is {pw.describe()}{why}.",
                where,
                severity=missing_severity,
            )
        elif pw.scheme is not None and pw.scheme.weak:
            yield self.found(
                f"root's password is stored as a {pw.scheme.value} hash, which is fast to crack.",
                where,
                advice="Make the system hash with sha512-crypt or yescrypt (`ENCRYPT_METHOD "
                "SHA512` in /etc/login.defs and the pam_unix options), then run "
                "`passwd root` again.",
            )
        elif pw.scheme is HashScheme.UNKNOWN:
            yield self.found(
                "root's password hash is of an unknown type; make sure it works.",
                where,
                severity=Severity.INFO,
            )


def password_problems(password: str) -> list[str]:
    """What ``password`` lacks for the platform's rule (it is never quoted)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"it has {len(password)} characters, fewer than {MIN_PASSWORD_LENGTH}")
    for test, name in (
        (str.isupper, "upper-case letter"),
        (str.islower, "lower-case letter"),
        (str.isdigit, "digit"),
    ):
        if not any(test(c) and c.isascii() for c in password):
            problems.append(f"it has no {name}")
    if not any(c in SPECIALS for c in password):
        problems.append(f"it has no special character from {SPECIALS}")
    others = sum(1 for c in password if not (c.isascii() and c.isalnum()) and c not in SPECIALS)
    if others:
        problems.append(f"it has {others} character(s) outside letters, digits and {SPECIALS}")
    return problems


def _audit_order(acc: AccountFacts) -> list[Account]:
    """Accounts with a hash: root, other uid-0 accounts, login accounts, then the rest."""
    with_hash = [a for a in acc.accounts if a.password.state is PasswordState.SET]
    return sorted(with_hash, key=lambda a: (a.name != "root", a.uid != 0, not a.login_shell))


class PasswordStrengthRule(Rule):
    """What it checks: the image's initial password (given with ``--password-env VAR`` or
    ``--password``) has at least 8 characters and all four of: upper-case, lower-case, digits
    and a special character from ``!@$%^-_=+[{}]:,./?``, and whether it is root's password in
    the image. Every password hash stored in the image is also audited against a built-in list
    of about 200 well-known weak passwords and each account's own name, and an empty password
    on a login account is reported. The audit has a time budget (a quarter of a second); what
    it could not audit is reported as information, saying how far it got ("checked 44 of 213
    common passwords"); ``imageport check --all-passwords`` tries the whole list instead
    (still within hard limits: 64 accounts, 2 s a try, 10 minutes in all).

    Why it matters: servers made from the image are reachable from the network; weak, default
    or empty passwords are the first thing scanners try.

    How to fix: set strong passwords with ``passwd USER`` on the source machine (or lock
    unused accounts with ``passwd -l USER``) and export the image again.

    Example: root's sha512-crypt hash of ``123456`` reports "root's password is a well-known
    weak password: 1****6"; a strong yescrypt hash the budget did not cover reports "root
    [/etc/shadow:1]: checked 5 of 213 common passwords (yescrypt: time budget of 0.25 s used
    up)".
    """

    id = "IMG-PASSWORD-STRENGTH"
    severity = Severity.ERROR
    title = "Passwords must be strong (upper, lower, digit, special) and not well-known"
    advice = "Set a strong password with `passwd USER` on the source machine and export again."
    title_zh = "密码必须足够强（含大小写字母、数字和特殊字符）且不是常见密码"
    advice_zh = "在源机器上用 `passwd USER` 设置强密码，然后重新导出。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        found = _guest_accounts(facts)
        if found is None:
            return
        _, acc = found
        helper = CryptHelper.find()
        supplied = facts.options.password
        if isinstance(supplied, str):
            yield from self._check_supplied(supplied, acc, helper)
        for a in acc.accounts:
            if a.password.state is PasswordState.EMPTY and _can_log_in(a):
                yield self.found(
                    f"{a.name} has an empty password: no password is needed to log in.",
                    _line(a),
                    advice=f"Set a password with `passwd {a.name}` or lock the "
                    f"account with `passwd -l {a.name}`.",
                )
        targets = [
            AuditTarget(a.name, a.password.stored, a.password.source) for a in _audit_order(acc)
        ]
        audit = audit_weak_passwords(targets, helper=helper, whole_list=facts.options.all_passwords)
        for match in audit.matches:
            t = match.target
            scheme = next(a.password.scheme for a in acc.accounts if a.name == t.user)
            yield self.found(
                f"{t.user}'s password is a well-known weak password: {match.masked}.",
                f"{t.source}: {scheme.value if scheme else '?'} hash of a password on "
                "imageport's weak-password list",
                advice=f"Set a strong password with `passwd {t.user}` (or lock it with "
                f"`passwd -l {t.user}`) and export the image again.",
            )
        if audit.not_audited:
            yield self._not_audited(audit.not_audited, facts.options.all_passwords)

    def _not_audited(self, left: Sequence[NotAudited], whole_list: bool) -> Finding:
        """One INFO finding: how far the audit got on each account it did not finish."""
        timed_out = any(n.out_of_time for n in left)
        advice = []
        if timed_out and not whole_list:
            advice.append(
                "Run `imageport check --all-passwords IMAGE` to try the whole list without "
                "the time budget."
            )
        if any(not n.out_of_time for n in left):
            advice.append(
                "Install mkpasswd (package whois) to audit yescrypt, bcrypt and DES hashes."
            )
        advice.append("Check these accounts' passwords yourself.")
        return self.found(
            (
                "The time ran out before every stored password was compared with the whole "
                "list of common passwords."
                if timed_out
                else "Some stored passwords were not audited against the list of common passwords."
            ),
            *(n.describe() for n in left[:MAX_LISTED]),
            *((f"and {len(left) - MAX_LISTED} more accounts",) if len(left) > MAX_LISTED else ()),
            severity=Severity.INFO,
            advice=" ".join(advice),
        )

    def _check_supplied(
        self, password: str, acc: AccountFacts, helper: CryptHelper | None
    ) -> Iterator[Finding]:
        problems = password_problems(password)
        if problems:
            yield self.found(
                "The password given for the image does not meet the password rule.",
                *problems,
                advice=f"Choose a password of at least {MIN_PASSWORD_LENGTH} "
                f"characters with upper- and lower-case letters, digits and one "
                f"of {SPECIALS}.",
            )
        root = acc.root
        if root is None or root.password.state is not PasswordState.SET:
            state = root.password.describe() if root else "missing"
            yield self.found(
                "The password given cannot be root's password in the image: "
                f"root's password is {state}.",
                severity=Severity.INFO,
            )
            return
        pw = root.password
        try:
            same = verify_password(password, pw.stored, helper=helper, timeout=COMPARE_TIMEOUT)
        except Unverifiable as exc:
            yield self.found(
                "The password given could not be compared with root's password "
                f"in the image ({exc}).",
                f"{pw.source}: {pw.describe()}",
                severity=Severity.INFO,
            )
            return
        except ImageportError as exc:
            yield self.found(
                f"root's password hash could not be checked ({exc}).",
                f"{pw.source}: {pw.describe()}",
                severity=Severity.WARNING,
            )
            return
        if not same:
            yield self.found(
                "The password given is not root's password in the image: the "
                "image's root password differs.",
                f"{pw.source}: {pw.describe()}",
                severity=Severity.WARNING,
                advice="Set root's password to the intended one with `passwd "
                "root` on the source machine, or give the image's real password.",
            )
