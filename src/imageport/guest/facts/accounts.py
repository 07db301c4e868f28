"""Who can log in to the guest: accounts, their passwords, SSH keys, sshd and cloud-init.

Learned from the file formats as documented in passwd(5), shadow(5), sshd_config(5) (OpenSSH:
"for each keyword, the first obtained value will be used"; ``Include`` expands globs in lexical
order; ``Match`` starts a conditional block), systemd.unit(5) / systemd.preset(5) (``.wants/``
symlinks, preset files) and crypt(5) (hash prefixes; ``!`` locks an account).

:func:`read_accounts` is a topic reader for :meth:`GuestFacts.derive`. It never returns a hash
in anything it prints: :class:`Password` keeps the stored hash (for the audit) out of ``repr``.
Every file read is capped (:data:`MAX_CONFIG_BYTES`), and so are the accounts, key files,
includes and directory entries scanned.
"""

from __future__ import annotations

import enum
import fnmatch
import posixpath
from dataclasses import dataclass, field

from imageport.errors import ImageportError, LimitExceededError
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.password_hashes import HashScheme, hash_scheme
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import (
    BrokenLinkError,
    FileType,
    NoSuchFileError,
    TooLargeError,
    WrongTypeError,
)

#: Largest passwd, shadow, sshd_config or authorized_keys file read.
MAX_CONFIG_BYTES = 1 << 20
#: Accounts read from /etc/passwd.
MAX_ACCOUNTS = 10_000
#: Accounts whose home is searched for authorized_keys.
MAX_KEY_ACCOUNTS = 1000
#: Entries looked at in one directory (wants directories, sshd_config.d, rc?.d, presets).
MAX_DIR_SCAN = 1000
#: sshd_config files read in total through ``Include``, and how deep includes nest.
MAX_SSHD_FILES = 64
MAX_INCLUDE_DEPTH = 8

#: Shells that refuse an interactive login.
NOLOGIN_SHELLS = frozenset({"nologin", "false", "sync", "shutdown", "halt"})
SSHD_PROGRAMS = ("/usr/sbin/sshd", "/usr/bin/sshd")
SSHD_UNITS = ("ssh.service", "sshd.service", "ssh.socket", "sshd.socket")
CLOUD_INIT_PROGRAM = "/usr/bin/cloud-init"
SSHD_CONFIG = "/etc/ssh/sshd_config"
#: Where sshd looks for keys unless ``AuthorizedKeysFile`` says otherwise.
DEFAULT_KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
#: The passwd password field that means "see /etc/shadow".
_IN_SHADOW = "x"
_PRESET_DIRS = (
    "/etc/systemd/system-preset",
    "/usr/lib/systemd/system-preset",
    "/lib/systemd/system-preset",
)
_SYSV_DIRS = ("/etc/rc2.d", "/etc/rc3.d", "/etc/rc5.d")


class PasswordState(enum.Enum):
    """What an account's password field allows."""

    EMPTY = "empty"  #: no password at all: a login needs none
    SET = "set"  #: a hash: the right password logs in
    LOCKED = "locked"  #: ``!`` before a hash: kept, but no password logs in
    NONE = "none"  #: ``*``, ``!``, ``!!`` ...: no password was ever set
    MISSING = "missing"  #: passwd says ``x`` but shadow has no entry for the account


@dataclass(frozen=True, slots=True)
class Password:
    """An account's password as stored, described without revealing the hash."""

    state: PasswordState
    source: str  #: ``/etc/shadow:3`` (or ``/etc/passwd:N`` when the hash is there)
    scheme: HashScheme | None = None  #: of the hash, for SET and LOCKED
    marker: str = ""  #: the field itself when it holds no hash (``*``, ``!!``)
    stored: str = field(default="", repr=False)  #: the hash, without lock characters

    @property
    def usable(self) -> bool:
        """Some password logs in (an empty field counts: no password logs in)."""
        return self.state in (PasswordState.SET, PasswordState.EMPTY)

    def describe(self) -> str:
        """``set (sha512-crypt)``, ``locked ('!' before a yescrypt hash)``, ``none ('*')``..."""
        scheme = self.scheme.value if self.scheme else "?"
        if self.state is PasswordState.SET:
            return f"set ({scheme})"
        if self.state is PasswordState.LOCKED:
            return f"locked ('{self.marker}' before a {scheme} hash)"
        if self.state is PasswordState.NONE:
            return f"no password ('{self.marker}')"
        if self.state is PasswordState.EMPTY:
            return "empty (no password needed)"
        return "no shadow entry"


@dataclass(frozen=True, slots=True)
class KeyFile:
    """An authorized_keys file of an account."""

    path: str
    keys: int | None  #: key lines; None when the file was too large or unreadable


@dataclass(frozen=True, slots=True)
class Account:
    """One /etc/passwd entry with its password and SSH keys."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    line_no: int
    password: Password
    key_files: tuple[KeyFile, ...] = ()

    @property
    def login_shell(self) -> bool:
        """The shell allows an interactive login (an empty shell means /bin/sh)."""
        return posixpath.basename(self.shell) not in NOLOGIN_SHELLS

    @property
    def keys(self) -> int:
        """Keys counted over all key files (a file that could not be counted counts 1)."""
        return sum(1 if k.keys is None else k.keys for k in self.key_files)


@dataclass(frozen=True, slots=True)
class Setting:
    """The value sshd uses for a keyword, and where it came from."""

    value: str
    source: str  #: ``/etc/ssh/sshd_config.d/50-cloud-init.conf:1``


@dataclass(frozen=True, slots=True)
class SshdFacts:
    """Whether sshd is there, starts at boot, and what its configuration says."""

    program: str | None  #: path of the sshd binary, None when not installed
    enabled_by: tuple[str, ...]  #: the unit symlinks / rc links that start it
    preset: str | None  #: a systemd preset line naming sshd, when one does
    settings: dict[str, Setting]  #: lower-case keyword -> first global value

    def setting(self, keyword: str) -> Setting | None:
        return self.settings.get(keyword.lower())


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """Everything about logging in to the guest."""

    accounts: tuple[Account, ...]
    sshd: SshdFacts
    cloud_init: str | None  #: path of the cloud-init program when installed
    problems: tuple[str, ...]  #: files missing or unreadable, caps reached
    #: files the login verdict depends on that exist but cannot be read (``path: why``):
    #: /etc/passwd, /etc/shadow or sshd_config as a dangling symlink, a symlink loop, a
    #: directory, or too large; the guest's own login fails on them too
    unreadable: tuple[str, ...] = ()

    def account(self, name: str) -> Account | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None

    @property
    def root(self) -> Account | None:
        return self.account("root")


# --- parsers of file contents (pure functions on strings) ------------------------------------


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One valid line of /etc/passwd."""

    name: str
    password: str
    uid: int
    gid: int
    home: str
    shell: str
    line_no: int


def parse_passwd(text: str, limit: int = MAX_ACCOUNTS) -> list[PasswdEntry]:
    """The entries of an /etc/passwd text; malformed and NIS (``+``/``-``) lines are skipped."""
    entries: list[PasswdEntry] = []
    for line_no, line in enumerate(text.split("\n"), 1):
        fields = line.rstrip("\r").split(":")
        if len(fields) != 7 or not fields[0] or fields[0][0] in "+-#":
            continue
        if (
            not (fields[2].isdecimal() and fields[3].isdecimal())
            or len(fields[2]) > 10
            or len(fields[3]) > 10
        ):
            continue
        entries.append(
            PasswdEntry(
                fields[0], fields[1], int(fields[2]), int(fields[3]), fields[5], fields[6], line_no
            )
        )
        if len(entries) >= limit:
            break
    return entries


def parse_shadow(text: str) -> dict[str, tuple[str, int]]:
    """name -> (password field, line number); the first entry of a name wins, as getspnam."""
    found: dict[str, tuple[str, int]] = {}
    for line_no, line in enumerate(text.split("\n"), 1):
        fields = line.rstrip("\r").split(":")
        if len(fields) < 2 or not fields[0] or fields[0][0] in "+-#":
            continue
        found.setdefault(fields[0], (fields[1], line_no))
        if len(found) >= MAX_ACCOUNTS:
            break
    return found


def classify_password(field_value: str, source: str) -> Password:
    """What a passwd/shadow password field allows (crypt(5), shadow(5))."""
    if field_value == "":
        return Password(PasswordState.EMPTY, source)
    if field_value[0] in "!*":
        rest = field_value.lstrip("!*")
        marker = field_value[: len(field_value) - len(rest)]
        scheme = hash_scheme(rest) if rest else HashScheme.UNKNOWN
        if rest and (rest.startswith("$") or scheme is not HashScheme.UNKNOWN):
            return Password(PasswordState.LOCKED, source, scheme, marker, rest)
        return Password(PasswordState.NONE, source, None, field_value[:8])
    scheme = hash_scheme(field_value)
    if field_value.startswith("$") or scheme is not HashScheme.UNKNOWN:
        return Password(PasswordState.SET, source, scheme, "", field_value)
    # "x" in shadow, "NP", "LK" ...: no password hashes to these
    return Password(PasswordState.NONE, source, None, field_value[:8])


def count_keys(text: str) -> int:
    """Key lines of an authorized_keys text (not blank, not comments)."""
    return sum(
        1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def split_directive(line: str) -> tuple[str, str] | None:
    """``(keyword, value)`` of one sshd_config line (``Key value`` or ``Key=value``)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    for i, ch in enumerate(text):
        if ch in " \t=":
            key, rest = text[:i], text[i:]
            rest = rest.lstrip(" \t")
            if rest.startswith("="):
                rest = rest[1:]
            return key.lower(), rest.strip().strip('"')
    return text.lower(), ""


# --- reading the guest ------------------------------------------------------------------------


def _read(
    files: GuestFiles, path: str, problems: list[str], unreadable: list[str] | None = None
) -> str | None:
    """``path``'s text; None when absent. One that exists but cannot be read is a problem,
    and also goes to ``unreadable`` when the caller's verdict depends on it."""
    try:
        return files.read_text(path, MAX_CONFIG_BYTES)
    except NoSuchFileError:
        return None
    except ImageportError as exc:
        problems.append(f"{path}: {exc}")
        if unreadable is not None:
            unreadable.append(f"{path}: {_why(exc)}")
        return None


def _why(exc: ImageportError) -> str:
    """Why a file could not be read, in a few words for a finding."""
    if isinstance(exc, BrokenLinkError):
        return "a symbolic link to a file that does not exist (dangling link)"
    if isinstance(exc, WrongTypeError):
        return "not a regular file"
    if isinstance(exc, TooLargeError):
        return f"larger than {MAX_CONFIG_BYTES} bytes"
    if isinstance(exc, LimitExceededError):
        return "a symbolic link loop"
    return f"cannot be read ({exc})"


def _present(files: GuestFiles, path: str) -> bool:
    """``path`` exists (a symlink counts even when its target is missing)."""
    try:
        files.locate(path, follow=False)
    except ImageportError:
        return False
    return True


def _program(files: GuestFiles, path: str) -> bool:
    """``path`` is a regular file, following symlinks (a directory, a broken or looping link
    is no program)."""
    try:
        return files.stat(path).type is FileType.REGULAR
    except ImageportError:
        return False


def _names(files: GuestFiles, path: str) -> list[str]:
    try:
        return sorted(e.name for e in files.listdir(path)[:MAX_DIR_SCAN])
    except ImageportError:
        return []


class _SshdConfigReader:
    """First global value of each keyword across sshd_config and its includes."""

    def __init__(self, files: GuestFiles, problems: list[str]) -> None:
        self.files = files
        self.problems = problems
        self.settings: dict[str, Setting] = {}
        self.read_count = 0
        #: config files (the main one, or one it includes by name) that exist but cannot be
        #: read: sshd refuses to start then
        self.unreadable: list[str] = []

    def read(self, path: str, depth: int = 0, in_match: bool = False) -> None:
        if depth > MAX_INCLUDE_DEPTH or self.read_count >= MAX_SSHD_FILES:
            self.problems.append(f"{path}: sshd_config includes nest too deep or too many")
            return
        self.read_count += 1
        text = _read(self.files, path, self.problems, self.unreadable)
        if text is None:
            return
        for line_no, line in enumerate(text.splitlines(), 1):
            directive = split_directive(line)
            if directive is None:
                continue
            key, value = directive
            if key == "match":
                in_match = value.lower() != "all"
            elif key == "include":
                for pattern in value.split():
                    for included in self._expand(pattern):
                        self.read(included, depth + 1, in_match)
            elif not in_match and key not in self.settings:
                self.settings[key] = Setting(value, f"{path}:{line_no}")

    def _expand(self, pattern: str) -> list[str]:
        full = posixpath.normpath(posixpath.join("/etc/ssh", pattern))
        folder, name = posixpath.split(full)
        if not any(c in name for c in "*?["):
            return [full]
        if any(c in folder for c in "*?["):
            self.problems.append(f"sshd_config Include {pattern}: globbed folders not read")
            return []
        return [
            posixpath.join(folder, n)
            for n in _names(self.files, folder)
            if fnmatch.fnmatchcase(n, name)
        ]


def _sshd_enabled(files: GuestFiles) -> tuple[str, ...]:
    found: list[str] = []
    wants_dirs = [
        f"/etc/systemd/system/{n}"
        for n in _names(files, "/etc/systemd/system")
        if n.endswith(".wants")
    ]
    wants_dirs += [
        "/usr/lib/systemd/system/multi-user.target.wants",
        "/lib/systemd/system/multi-user.target.wants",
    ]
    for folder in wants_dirs:
        found += [f"{folder}/{unit}" for unit in SSHD_UNITS if _present(files, f"{folder}/{unit}")]
    for folder in _SYSV_DIRS:
        found += [
            f"{folder}/{n}"
            for n in _names(files, folder)
            if n.startswith("S") and n[3:] in ("ssh", "sshd")
        ]
    return tuple(dict.fromkeys(found))


def _sshd_preset(files: GuestFiles, problems: list[str]) -> str | None:
    """The first preset line (files in lexical order, /etc first) whose pattern matches sshd."""
    chosen: dict[str, str] = {}
    for folder in _PRESET_DIRS:
        for name in _names(files, folder):
            if name.endswith(".preset"):
                chosen.setdefault(name, f"{folder}/{name}")
    for name in sorted(chosen):
        text = _read(files, chosen[name], problems) or ""
        for line_no, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if len(words) < 2 or words[0] not in ("enable", "disable"):
                continue
            if any(fnmatch.fnmatchcase(unit, words[1]) for unit in ("ssh.service", "sshd.service")):
                return f"{chosen[name]}:{line_no}: {line.strip()}"
    return None


def read_sshd(
    files: GuestFiles, problems: list[str], unreadable: list[str] | None = None
) -> SshdFacts:
    """sshd's program, enablement and configuration (configuration files that exist but cannot
    be read go to ``unreadable`` too)."""
    program = next((p for p in SSHD_PROGRAMS if _program(files, p)), None)
    config = _SshdConfigReader(files, problems)
    config.read(SSHD_CONFIG)
    if unreadable is not None:
        unreadable += config.unreadable
    return SshdFacts(program, _sshd_enabled(files), _sshd_preset(files, problems), config.settings)


def _key_paths(entry: PasswdEntry, key_files: str) -> list[str]:
    paths = []
    for token in key_files.split():
        token = (
            token.replace("%%", "\0")
            .replace("%h", entry.home)
            .replace("%u", entry.name)
            .replace("%U", str(entry.uid))
            .replace("\0", "%")
        )
        if "%" in token or token.lower() == "none":
            continue
        if not token.startswith("/"):
            token = posixpath.join(entry.home, token)
        paths.append(posixpath.normpath(token))
    return paths


def _key_files(
    files: GuestFiles, entry: PasswdEntry, key_setting: str, problems: list[str]
) -> tuple[KeyFile, ...]:
    if not entry.home.startswith("/"):
        return ()
    found = []
    for path in _key_paths(entry, key_setting):
        try:
            text = files.read_text(path, MAX_CONFIG_BYTES)
        except NoSuchFileError:
            continue
        except TooLargeError:  # sshd reads it: a file this large surely holds keys
            found.append(KeyFile(path, None))
            continue
        except ImageportError as exc:  # dangling, a loop, a directory: sshd reads no key
            problems.append(f"{path}: {_why(exc)}; no key counted")
            found.append(KeyFile(path, 0))
            continue
        if text is not None:
            found.append(KeyFile(path, count_keys(text)))
    return tuple(found)


def read_accounts(guest: GuestFacts) -> AccountFacts:
    """The guest's accounts, sshd and cloud-init (a reader for ``guest.derive``)."""
    problems: list[str] = []
    if guest.layout.root is None:
        return AccountFacts((), SshdFacts(None, (), None, {}), None, ("no root filesystem",))
    files = guest.files
    unreadable: list[str] = []
    passwd = _read(files, "/etc/passwd", problems, unreadable)
    if passwd is None and not unreadable:
        problems.append("/etc/passwd: not found")
    shadow_text = _read(files, "/etc/shadow", problems, unreadable)
    shadow = parse_shadow(shadow_text) if shadow_text is not None else {}
    sshd = read_sshd(files, problems, unreadable)
    key_setting = sshd.setting("authorizedkeysfile")
    keys_from = key_setting.value if key_setting else " ".join(DEFAULT_KEY_FILES)
    entries = parse_passwd(passwd or "")
    if len(entries) >= MAX_ACCOUNTS:
        problems.append(f"/etc/passwd: only the first {MAX_ACCOUNTS} accounts were read")
    accounts = []
    for index, entry in enumerate(entries):
        if entry.password == _IN_SHADOW:
            if entry.name in shadow:
                value, line_no = shadow[entry.name]
                password = classify_password(value, f"/etc/shadow:{line_no}")
            else:
                password = Password(PasswordState.MISSING, f"/etc/passwd:{entry.line_no}")
        else:
            password = classify_password(entry.password, f"/etc/passwd:{entry.line_no}")
        account = Account(
            entry.name, entry.uid, entry.gid, entry.home, entry.shell, entry.line_no, password
        )
        if index < MAX_KEY_ACCOUNTS and (account.login_shell or entry.uid == 0):
            account = Account(
                entry.name,
                entry.uid,
                entry.gid,
                entry.home,
                entry.shell,
                entry.line_no,
                password,
                _key_files(files, entry, keys_from, problems),
            )
        accounts.append(account)
    cloud_init = CLOUD_INIT_PROGRAM if _program(files, CLOUD_INIT_PROGRAM) else None
    return AccountFacts(tuple(accounts), sshd, cloud_init, tuple(problems), tuple(unreadable))
