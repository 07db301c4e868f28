"""Where the client finds its endpoints and credentials.

Each setting is taken from the first place that has it:

1. a command-line flag (``--endpoint``, ``--s3-endpoint``, ``--access-key``, ``--secret-key``,
   ``--project-id``);
2. the environment (``IMAGEPORT_ENDPOINT``, ``IMAGEPORT_S3_ENDPOINT``, ``IMAGEPORT_ACCESS_KEY``,
   ``IMAGEPORT_SECRET_KEY``, ``IMAGEPORT_PROJECT_ID``, ``IMAGEPORT_REGION``);
3. a TOML file: ``--config PATH``, else ``$IMAGEPORT_CONFIG``, else
   ``$XDG_CONFIG_HOME/imageport/client.toml`` (``~/.config/imageport/client.toml``), with the
   keys ``endpoint``, ``s3_endpoint``, ``access_key``, ``secret_key``, ``project_id``,
   ``region``. The default file may be absent; a file named explicitly must exist.

A command asks only for what it uses (:meth:`ClientConfig.require`), and a missing setting is a
:class:`ConfigError` that names all three ways to give it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from imageport.client.errors import ConfigError
from imageport.client.signing import DEFAULT_REGION, Credentials

MAX_CONFIG_BYTES = 64 * 1024
"""A config file larger than this is refused (it holds six short strings)."""

SETTINGS = ("endpoint", "s3_endpoint", "access_key", "secret_key", "project_id", "region")
_FLAGS = {name: "--" + name.replace("_", "-") for name in SETTINGS}


def env_name(setting: str) -> str:
    """The environment variable of ``setting``: ``IMAGEPORT_S3_ENDPOINT`` for ``s3_endpoint``."""
    return "IMAGEPORT_" + setting.upper()


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The resolved settings; empty string means "not given anywhere"."""

    endpoint: str = ""
    s3_endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    project_id: str = ""
    region: str = DEFAULT_REGION
    config_path: str = ""

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming every one of ``names`` that is not set."""
        missing = [n for n in names if not getattr(self, n)]
        if not missing:
            return
        where = self.config_path or "the config file"
        lines = [f"{_FLAGS[n]} / {env_name(n)} / '{n}' in {where}" for n in missing]
        raise ConfigError(
            "missing "
            + ", ".join(n.replace("_", " ") for n in missing)
            + " (give "
            + "; ".join(lines)
            + ")"
        )

    @property
    def credentials(self) -> Credentials:
        """The access key pair (and project) to sign with."""
        return Credentials(self.access_key, self.secret_key, self.project_id)

    def __repr__(self) -> str:  # never print the secret
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "secret_key"
        )
        return f"ClientConfig({shown})"


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/imageport/client.toml``, else ``~/.config/imageport/client.toml``."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "imageport" / "client.toml"


def _read_file(path: Path, explicit: bool) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(SETTINGS)})"
        )
    out: dict[str, str] = {}
    for key, value in doc.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
        out[key] = value
    return out


def load_config(
    flags: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> ClientConfig:
    """Resolve every setting from ``flags`` > ``env`` > the config file (see the module doc).

    ``flags`` maps setting names to the flag value or None; ``config_path`` is ``--config``.
    """
    environ = os.environ if env is None else env
    explicit = config_path or environ.get("IMAGEPORT_CONFIG") or ""
    path = Path(explicit).expanduser() if explicit else default_config_path(environ)
    from_file = _read_file(path, explicit=bool(explicit))
    values: dict[str, str] = {}
    for name in SETTINGS:
        flag = flags.get(name)
        value = flag if flag else environ.get(env_name(name)) or from_file.get(name, "")
        if value:
            values[name] = value.strip()
    for name in ("endpoint", "s3_endpoint"):
        if name in values:
            values[name] = _endpoint(values[name], name)
    return ClientConfig(config_path=str(path), **values)


def _endpoint(value: str, name: str) -> str:
    """An absolute http(s) URL without a trailing slash (``host:port`` gets ``http://``)."""
    url = value if "://" in value else "http://" + value
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"{name} {value!r} is not an http:// or https:// URL")
    return url.rstrip("/")
