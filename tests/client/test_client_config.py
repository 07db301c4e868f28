"""Client configuration: flags > environment > config file, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from imageport.client.config import load_config
from imageport.client.errors import ConfigError

NONE = {
    "endpoint": None,
    "s3_endpoint": None,
    "access_key": None,
    "secret_key": None,
    "project_id": None,
}


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        'endpoint = "http://file:8080"\ns3_endpoint = "http://file:8081"\n'
        'access_key = "AK_FILE"\nsecret_key = "SK_FILE"\nproject_id = "p-file"\n',
    )
    env = {
        "IMAGEPORT_ACCESS_KEY": "AK_ENV",
        "IMAGEPORT_S3_ENDPOINT": "env-host:9000/",
        "IMAGEPORT_CONFIG": str(path),
    }
    flags = {**NONE, "access_key": "AK_FLAG"}

    config = load_config(flags, env)

    assert config.access_key == "AK_FLAG"  # flag
    assert config.s3_endpoint == "http://env-host:9000"  # environment, normalised
    assert config.secret_key == "SK_FILE"  # noqa: S105  (from the file)
    assert config.endpoint == "http://file:8080"
    assert config.project_id == "p-file"
    assert config.credentials.project_id == "p-file"
    assert "SK_FILE" not in repr(config)


def test_config_flag_beats_environment_path_and_default_is_xdg(tmp_path: Path) -> None:
    chosen = _file(tmp_path, 'access_key = "AK_CHOSEN"\n')
    (tmp_path / "xdg" / "imageport").mkdir(parents=True)
    (tmp_path / "xdg" / "imageport" / "client.toml").write_text('access_key = "AK_XDG"\n')

    assert load_config(NONE, {"IMAGEPORT_CONFIG": "/nonexistent"}, str(chosen)).access_key == (
        "AK_CHOSEN"
    )
    assert load_config(NONE, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).access_key == "AK_XDG"
    # no default file at all is fine: nothing is set
    assert load_config(NONE, {"HOME": str(tmp_path / "nohome")}).access_key == ""


def test_missing_settings_are_named_with_every_way_to_give_them(tmp_path: Path) -> None:
    config = load_config(NONE, {"HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as err:
        config.require("endpoint", "secret_key")
    text = str(err.value)
    assert "missing endpoint, secret key" in text
    assert "--secret-key" in text and "IMAGEPORT_SECRET_KEY" in text and "client.toml" in text
    assert "--access-key" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endpoint = [", "not valid TOML"),
        ('endpont = "x"', "unknown key(s) endpont"),
        ("access_key = 3", "access_key must be a string"),
        ('endpoint = "ftp://x"', "not an http:// or https:// URL"),
    ],
)
def test_bad_config_files_are_explained(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(NONE, {}, str(path))
    assert message in str(err.value)


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(NONE, {"IMAGEPORT_CONFIG": str(tmp_path / "gone.toml")})
    assert "gone.toml does not exist" in str(err.value)
