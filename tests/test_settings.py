"""The production profile refuses every development default unless it is named explicitly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vault.crypto import load_key_provider
from vault.db import make_engine
from vault.settings import ConfigError, Settings


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keyring.json"
    path.write_text('{"active": 1, "keys": [{"version": 1, "key": "' + "A" * 43 + '="}]}')
    path.chmod(0o600)
    return path


def production(keyring: Path, tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "env": "production",
        "issuer": "https://vault.ville.example.fr",
        "data_dir": tmp_path,
        "database_url": "postgresql+psycopg://vault@db/vault",
        "storage_backend": "s3",
        "s3_bucket": "vault",
        "antivirus": "clamd",
        "clamd_address": "tcp://clamd:3310",
        "keyring_file": keyring,
        "smtp_url": "smtp+starttls://mail.example.fr:587",
        "jobs": "worker",
    }
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return Settings(**values)


def test_complete_production_configuration_starts(keyring: Path, tmp_path: Path) -> None:
    assert production(keyring, tmp_path).check() == []


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("issuer", "VAULT_ISSUER"),
        ("database_url", "VAULT_DATABASE_URL"),
        ("storage_backend", "VAULT_STORAGE_BACKEND"),
        ("antivirus", "VAULT_ANTIVIRUS"),
        ("keyring_file", "VAULT_KEYRING_FILE"),
    ],
)
def test_each_development_default_is_refused(keyring: Path, tmp_path: Path, missing: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        production(keyring, tmp_path, **{missing: None}).check()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_keyring_open_to_group_or_others_is_refused_in_production(keyring: Path, tmp_path: Path, mode: int) -> None:
    keyring.chmod(mode)
    with pytest.raises(ConfigError, match=f"VAULT_KEYRING_FILE={keyring} is open to group or others") as refused:
        production(keyring, tmp_path).check()
    assert f"chmod 600 {keyring}" in str(refused.value)
    keyring.chmod(0o400)  # read-only for its owner: fine
    assert production(keyring, tmp_path).check() == []


def test_development_keyring_and_database_are_private_whatever_the_umask(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    previous = os.umask(0)
    try:
        load_key_provider(settings)
        engine = make_engine(settings.effective_database_url)
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        engine.dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "var" / "keyring.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var" / "vault.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700


def test_development_mail_and_blob_files_are_private_and_an_open_data_folder_is_tightened(tmp_path: Path) -> None:
    """An older data folder made 0755, a umask of 0: once the service is built, the folder is 0700;
    the outbox's mails (live links) are 0600 and the blob folders 0700."""
    from email.message import EmailMessage

    from vault.mail import OutboxMailer
    from vault.services import build_services

    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    settings = Settings(data_dir=data)
    previous = os.umask(0)
    try:
        build_services(settings).engine.dispose()
        message = EmailMessage()
        message["Subject"], message["To"] = "Réinitialisation", "someone@example.org"
        message.set_content("https://vault.example/password/reset?token=secret")
        OutboxMailer(settings.outbox_dir).send(message)
        upload = build_services(settings).documents.store.start_upload("ab" + "c" * 30)
        upload.write(b"ciphertext")
        upload.complete()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.outbox_dir.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in settings.outbox_dir.iterdir()] == [0o600]
    blob_folders = [p for p in (data / "blobs").rglob("*") if p.is_dir()]
    assert blob_folders and all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in [data / "blobs", *blob_folders])


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o705])
def test_a_data_folder_open_to_group_or_others_is_refused_in_production(keyring: Path, tmp_path: Path,
                                                                        mode: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(mode)
    with pytest.raises(ConfigError, match=f"VAULT_DATA_DIR={data} is open to group or others") as refused:
        production(keyring, tmp_path, data_dir=data, storage_backend="fs").check()
    assert f"chmod 700 {data}" in str(refused.value)
    assert production(keyring, tmp_path, data_dir=data).check() == []  # S3, SMTP, PostgreSQL: nothing kept there
    data.chmod(0o700)
    assert not [e for e in _errors(production(keyring, tmp_path, data_dir=data, storage_backend="fs")) if "DATA_DIR" in e]


def test_a_production_data_folder_the_service_makes_is_private_so_the_next_start_accepts_it(
        keyring: Path, tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    settings = production(keyring, tmp_path, data_dir=data, storage_backend="fs")
    previous = os.umask(0o022)
    try:
        settings.make_data_dir_private()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert not [e for e in _errors(production(keyring, tmp_path, data_dir=data, storage_backend="fs")) if "DATA_DIR" in e]


def test_a_production_database_named_elsewhere_keeps_nothing_in_the_data_folder(keyring: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    settings = production(keyring, tmp_path, data_dir=data, database_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert not settings.keeps_files
    assert not [e for e in _errors(settings) if "DATA_DIR" in e]


def _errors(settings: Settings) -> list[str]:
    try:
        settings.check()
    except ConfigError as exc:
        return [str(exc)]
    return []


def test_plain_http_issuer_is_refused_in_production(keyring: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HTTPS"):
        production(keyring, tmp_path, issuer="http://vault.ville.example.fr").check()


def test_missing_keyring_file_is_refused(keyring: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        production(keyring, tmp_path, keyring_file=tmp_path / "nope.json").check()


def test_development_values_named_explicitly_are_accepted_with_warnings(keyring: Path, tmp_path: Path) -> None:
    warnings = production(keyring, tmp_path, database_url="sqlite:////srv/vault.db", storage_backend="fs",
                          antivirus="off", clamd_address=None).check()
    assert any("SQLite" in w for w in warnings)
    assert any("filesystem" in w for w in warnings)
    assert any("WITHOUT antivirus" in w for w in warnings)


def test_development_runs_on_defaults_with_visible_warnings(tmp_path: Path) -> None:
    warnings = Settings(data_dir=tmp_path).check()
    assert any("antivirus is OFF" in w for w in warnings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"antivirus": "clamd", "clamd_address": None}, "VAULT_CLAMD_ADDRESS must be set"),
        ({"clamd_address": "clamd:3310"}, "tcp://host:port"),
        ({"storage_backend": "s3", "s3_bucket": None}, "VAULT_S3_BUCKET"),
        ({"smtp_url": "http://mail"}, "VAULT_SMTP_URL"),
        ({"key_provider": "aws-kms", "kms_key_id": None}, "VAULT_KMS_KEY_ID"),
    ],
)
def test_inconsistent_settings_are_refused(keyring: Path, tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        production(keyring, tmp_path, **changes).check()


@pytest.mark.parametrize("issuer", ["vault.example.fr", "ftp://vault.example.fr", "https://vault.example.fr/?a=1"])
def test_malformed_issuer_is_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="VAULT_ISSUER"):
        Settings(issuer=issuer)


def test_the_city_time_zone_is_checked_and_gives_its_own_today() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="VAULT_TIMEZONE"):
        Settings(timezone="Europe/Atlantis")
    # UTC+14 and UTC-11: 25 hours apart, never the same date.
    ahead, behind = Settings(timezone="Pacific/Kiritimati").today(), Settings(timezone="Pacific/Pago_Pago").today()
    assert ahead != behind
    before = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert Settings(timezone="Pacific/Kiritimati").today() in {before, datetime.now(ZoneInfo("Pacific/Kiritimati")).date()}
    assert Settings().timezone == "Europe/Paris"
