"""Configuration: TOML + environment, typed and validated; secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from reactor.config import ConfigurationError, Secret, load

TENANT = "11111111-2222-3333-4444-555555555555"
GROUP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
PG_URL = "postgresql://askcody-reactor-id@askcody-reactor-pg.postgres.database.azure.com:5432/reactor?sslmode=require"
PG_URL_WITH_PASSWORD = PG_URL.replace("@", ":pg-secret-xyz@")
PG_URL_WITHOUT_USER = PG_URL.replace("askcody-reactor-id@", "")
GOOD = f"""
[server]
port = 9000
public_url = "https://reactor.example.com"

[graph]
tenant_id = "{TENANT}"
client_id = "{TENANT}"
client_secret = "graph-secret-value-xyz"

[askcody]
scim_url = "https://askcody.example.com/scim/v2"
token = "askcody-token-value-xyz"
dialect = "entra"

[attributes]
cost_center = "onPremisesExtensionAttributes/extensionAttribute7"

[[groups]]
id = "{GROUP}"
askcody_group = "Reception"
grants = "reception"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "reactor.toml"
    p.write_text(text)
    return p


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reactor", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_good_file_loads_into_typed_settings(tmp_path: Path) -> None:
    s = load(write(tmp_path, GOOD), env={})
    assert s.server.port == 9000
    assert s.askcody.dialect == "entra"
    assert isinstance(s.askcody.token, Secret)
    assert "askcody-token-value-xyz" not in repr(s)
    assert s.groups[0].grants == "reception"
    assert s.attributes.cost_center_select == "onPremisesExtensionAttributes"
    assert s.server.notification_url == "https://reactor.example.com/notifications"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    s = load(write(tmp_path, GOOD), env={"REACTOR_SERVER_PORT": "9100", "REACTOR_ASKCODY_TOKEN": "from-env"})
    assert s.server.port == 9100
    assert s.askcody.token.reveal() == "from-env"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[server]", "[server]\nbogus = 1"), "unknown key server.bogus"),
        (('public_url = "https://reactor.example.com"', 'public_url = "not a url"'), "server.public_url"),
        ((f'tenant_id = "{TENANT}"', 'tenant_id = "not-a-guid"'), "graph.tenant_id is not a GUID"),
        ((f'id = "{GROUP}"', 'id = ""'), "groups[0] has no id"),
        (('token = "askcody-token-value-xyz"', ""), "askcody.token is missing"),
        (('dialect = "entra"', 'dialect = "scim3"'), "askcody.dialect"),
        (('grants = "reception"', 'grants = "king"'), "grants must be one of"),
        (("extensionAttribute7", "extensionAttribute16"), "attributes.cost_center"),
        (("port = 9000", "port = 9000\nadmin_port = 9000"), "server.admin_port must differ from server.port"),
        (("https://askcody.example.com", "http://askcody.example.com"), "askcody.scim_url must be https"),
        (("https://askcody.example.com", "http://10.1.2.3"), "askcody.scim_url must be https"),
        (("https://askcody.example.com", "http://localhost.askcody.example.com"), "askcody.scim_url must be https"),
        (("[server]", '[server]\nadmin_host = "0.0.0.0"'),
         "server.admin_token is required when server.admin_host is not loopback"),
        (("[server]", '[server]\nadmin_host = "10.0.4.7"\nadmin_token = ""'),
         "server.admin_token is required when server.admin_host is not loopback"),
        (("[server]", '[store]\nentra_auth = true\n\n[server]'), "store.entra_auth needs a postgresql:// store.url"),
        (("[server]", f'[store]\nentra_auth = true\nurl = "{PG_URL}"\npassword = "pg-secret-xyz"\n\n[server]'),
         "store.entra_auth and store.password are both set"),
        (("[server]", f'[store]\nentra_auth = true\nurl = "{PG_URL_WITH_PASSWORD}"\n\n[server]'),
         "store.entra_auth and the password in store.url are both set"),
        (("[server]", f'[store]\nentra_auth = true\nurl = "{PG_URL_WITHOUT_USER}"\n\n[server]'),
         "store.url names no user: with store.entra_auth"),
        (("[server]", '[store]\nentra_auth = "maybe"\n\n[server]'), "store.entra_auth must be true or false"),
        (('client_secret = "graph-secret-value-xyz"', 'client_secret = "graph-secret-value-xyz"\nmax_requests_per_second = 0'),
         "graph.max_requests_per_second must be greater than 0"),
    ],
)
def test_bad_values_are_refused_with_one_clear_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(change[0], change[1], 1)
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(write(tmp_path, text), env={})
    r = run("check-config", "--config", str(write(tmp_path, text)), env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message.split(" ")[0] in r.stderr
    assert "askcody-token-value-xyz" not in r.stderr + r.stdout
    assert "graph-secret-value-xyz" not in r.stderr + r.stdout
    assert "pg-secret-xyz" not in r.stderr + r.stdout


def test_unknown_environment_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key askcody\.tokn"):
        load(write(tmp_path, GOOD), env={"REACTOR_ASKCODY_TOKN": "x"})


def test_check_config_prints_the_effective_configuration_with_secrets_redacted(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(write(tmp_path, GOOD)),
            env={"PATH": "/usr/bin:/bin", "REACTOR_SERVER_PORT": "9200"})
    assert r.returncode == 0, r.stderr
    data = orjson.loads(r.stdout)
    assert data["server"]["port"] == 9200
    assert data["askcody"]["token"] == "<redacted>"
    assert data["graph"]["client_secret"] == "<redacted>"
    assert "askcody-token-value-xyz" not in r.stdout and "graph-secret-value-xyz" not in r.stdout
    assert data["groups"] == [{"id": GROUP, "askcody_group": "Reception", "grants": "reception", "nested": True}]


def test_check_config_shows_a_postgresql_url_without_its_password(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(write(tmp_path, GOOD)),
            env={"PATH": "/usr/bin:/bin",
                 "REACTOR_STORE_URL": "postgresql://reactor:pg-pass%40word-xyz@db.contoso.internal:5432/reactor?sslmode=require",
                 "REACTOR_STORE_PASSWORD": "other-pg-secret-xyz"})
    assert r.returncode == 0, r.stderr
    data = orjson.loads(r.stdout)
    assert data["store"]["url"] == "postgresql://***@db.contoso.internal:5432/reactor?***"
    assert data["store"]["password"] == "<redacted>"
    assert "pg-pass" not in r.stdout and "other-pg-secret-xyz" not in r.stdout


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "configuration file not found" in r.stderr


def test_bad_usage_exits_2() -> None:
    assert run("no-such-verb").returncode == 2
    assert run("deadletters", "replay").returncode == 2


@pytest.mark.parametrize(
    "scim_url",
    ["http://127.0.0.1:8000/scim/v2", "http://127.4.5.6/scim/v2", "http://localhost:8000/scim/v2", "http://[::1]:8000/scim/v2"],
)
def test_plain_http_to_askcody_is_accepted_on_a_loopback_host_only(tmp_path: Path, scim_url: str) -> None:
    s = load(write(tmp_path, GOOD.replace("https://askcody.example.com/scim/v2", scim_url)), env={})
    assert s.askcody.scim_url == scim_url


@pytest.mark.parametrize(("host", "token"), [("127.0.0.1", ""), ("::1", ""), ("localhost", ""), ("0.0.0.0", "s3cr3t-admin")])
def test_an_admin_listener_on_loopback_or_with_a_token_is_accepted(tmp_path: Path, host: str, token: str) -> None:
    text = GOOD.replace("[server]", f'[server]\nadmin_host = "{host}"\nadmin_token = "{token}"', 1)
    s = load(write(tmp_path, text), env={})
    assert (s.server.admin_host, s.server.admin_token.reveal()) == (host, token)


def test_check_config_hides_the_user_password_and_query_of_the_askcody_url(tmp_path: Path) -> None:
    url = "https://reactor:Pa55-w0rd@askcody.example.com:8443/scim/v2?code=query-secret-xyz"
    r = run("check-config", "--config", str(write(tmp_path, GOOD.replace("https://askcody.example.com/scim/v2", url))),
            env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert orjson.loads(r.stdout)["askcody"]["scim_url"] == "https://***@askcody.example.com:8443/scim/v2?***"
    assert "Pa55-w0rd" not in r.stdout and "query-secret-xyz" not in r.stdout and "reactor:" not in r.stdout
    # A refused URL is named without them too.
    bad = url.replace("https://", "http://")
    r = run("check-config", "--config", str(write(tmp_path, GOOD.replace("https://askcody.example.com/scim/v2", bad))),
            env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "askcody.scim_url must be https" in r.stderr
    assert "Pa55-w0rd" not in r.stderr + r.stdout and "query-secret-xyz" not in r.stderr + r.stdout


def test_a_url_that_is_not_http_is_named_without_its_credentials(tmp_path: Path) -> None:
    url = "ftp://reactor:Pa55-w0rd@askcody.example.com/scim/v2?code=query-secret-xyz"
    with pytest.raises(ConfigurationError, match=r"askcody\.scim_url is not a valid http") as caught:
        load(write(tmp_path, GOOD.replace("https://askcody.example.com/scim/v2", url)), env={})
    assert "Pa55-w0rd" not in str(caught.value) and "query-secret-xyz" not in str(caught.value)


def test_settings_never_show_a_store_password_written_in_the_url() -> None:
    from reactor.config import Settings, StoreSettings

    store = StoreSettings(url="postgresql://reactor:s3cr3t-pw@db.internal:5432/reactor?sslmode=require")
    for text in (repr(store), str(store), repr(Settings(store=store))):
        assert "s3cr3t-pw" not in text and "db.internal" in text, text


def test_check_config_shows_entra_authentication_to_postgresql(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(write(tmp_path, GOOD)),
            env={"PATH": "/usr/bin:/bin", "REACTOR_STORE_URL": PG_URL, "REACTOR_STORE_ENTRA_AUTH": "true"})
    assert r.returncode == 0, r.stderr
    store = orjson.loads(r.stdout)["store"]
    assert store["entra_auth"] is True and store["password"] == ""
    assert store["url"] == "postgresql://***@askcody-reactor-pg.postgres.database.azure.com:5432/reactor?***"
    assert orjson.loads(run("check-config", "--config", str(write(tmp_path, GOOD)),
                            env={"PATH": "/usr/bin:/bin"}).stdout)["store"]["entra_auth"] is False


def test_askcody_etags_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    assert load(write(tmp_path, GOOD), env={}).askcody.etags is True
    off = GOOD.replace('dialect = "entra"', 'dialect = "entra"\netags = false')
    assert load(write(tmp_path, off), env={}).askcody.etags is False
    assert load(write(tmp_path, GOOD), env={"REACTOR_ASKCODY_ETAGS": "false"}).askcody.etags is False
    with pytest.raises(ConfigurationError, match=r"askcody\.etags"):
        load(write(tmp_path, GOOD.replace('dialect = "entra"', 'dialect = "entra"\netags = "sometimes"')), env={})
