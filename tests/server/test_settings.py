"""Settings: defaults, the environment, and start-up errors that say what to set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from featureflag.exceptions import ConfigurationError
from featureflag_server.settings import DEFAULT_MAX_TOKEN_TTL, Settings, load_settings

SECRET = "k" * 40
OLD = "o" * 40
TOKENS = "alice:alice-token-0123456789,bob:bob-token-0123456789ab"
ENV = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_API_TOKENS": TOKENS}


def test_defaults() -> None:
    s = load_settings([], ENV)
    assert (s.host, s.port, s.db, s.fork_domain) == (
        "127.0.0.1",
        8000,
        Path("featureflag.sqlite3"),
        "localhost",
    )
    assert s.environment == "development"
    assert s.max_token_ttl == DEFAULT_MAX_TOKEN_TTL == 12 * 3600
    assert s.secret_values == [SECRET]
    assert set(s.api_tokens) == {"alice", "bob"}
    assert s.secure_cookies is False
    assert s.access_log is True
    assert s.loop == "auto"


def test_options() -> None:
    s = load_settings(
        [
            "--host", "0.0.0.0", "--port", "9000", "--db", "/var/lib/ff.db",
            "--fork-domain", "QA.Example.com.", "--max-token-ttl", "600", "--secure-cookies",
            "--no-access-log", "--loop", "asyncio",
        ],
        ENV | {"FEATUREFLAG_ENVIRONMENT": "qa"},
    )  # fmt: skip
    assert (s.host, s.port, s.db) == ("0.0.0.0", 9000, Path("/var/lib/ff.db"))
    assert s.fork_domain == "qa.example.com"
    assert s.max_token_ttl == 600
    assert s.environment == "qa"
    assert s.secure_cookies is True
    assert s.access_log is False
    assert s.loop == "asyncio"


def test_max_token_ttl_from_the_environment_and_the_option_wins() -> None:
    assert load_settings([], ENV | {"FEATUREFLAG_MAX_TOKEN_TTL": "60"}).max_token_ttl == 60
    both = load_settings(["--max-token-ttl", "30"], ENV | {"FEATUREFLAG_MAX_TOKEN_TTL": "60"})
    assert both.max_token_ttl == 30


def test_several_secrets_the_first_signs() -> None:
    s = load_settings([], ENV | {"FEATUREFLAG_SECRET": f" {SECRET} , {OLD} ,"})
    assert s.secret_values == [SECRET, OLD]
    assert s.signing_secret == SECRET
    from featureflag.tokens import OverrideSigner

    token = s.signer().dumps({"a": True}, sub="alice")
    assert OverrideSigner(SECRET, environment="development").loads(token).flags == {"a": True}
    old_token = OverrideSigner(OLD, environment="development").dumps({"b": "x"}, sub="bob")
    assert s.signer().loads(old_token).flags == {"b": "x"}  # rotation: old still verifies


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, ["FEATUREFLAG_SECRET", "FEATUREFLAG_API_TOKENS", "secrets.token_urlsafe"]),
        ({"FEATUREFLAG_API_TOKENS": TOKENS}, ["Set FEATUREFLAG_SECRET"]),
        ({"FEATUREFLAG_SECRET": SECRET}, ["Set FEATUREFLAG_API_TOKENS", "name:token"]),
        (ENV | {"FEATUREFLAG_SECRET": "short"}, ["FEATUREFLAG_SECRET", "32 bytes"]),
        (ENV | {"FEATUREFLAG_SECRET": f"{SECRET},short"}, ["secret number 2"]),
        (ENV | {"FEATUREFLAG_SECRET": " , "}, ["FEATUREFLAG_SECRET", "32 bytes"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": " , "}, ["Set FEATUREFLAG_API_TOKENS"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": "alice"}, ["FEATUREFLAG_API_TOKENS", "name:token"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": "alice:"}, ["FEATUREFLAG_API_TOKENS", "name:token"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": ":x" * 10}, ["FEATUREFLAG_API_TOKENS"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": "alice:short"}, ["FEATUREFLAG_API_TOKENS", "16"]),
        (ENV | {"FEATUREFLAG_API_TOKENS": TOKENS + ",alice:x" + "y" * 20}, ["twice"]),
        (
            ENV | {"FEATUREFLAG_API_TOKENS": "a:same-token-0123456789,b:same-token-0123456789"},
            ["another user's token"],
        ),
        (ENV | {"FEATUREFLAG_API_TOKENS": "al ice:abcdefghijklmnopqrstu"}, ["letters"]),
        (ENV | {"FEATUREFLAG_ENVIRONMENT": "x" * 65}, ["FEATUREFLAG_ENVIRONMENT"]),
        (ENV | {"FEATUREFLAG_MAX_TOKEN_TTL": "soon"}, ["FEATUREFLAG_MAX_TOKEN_TTL"]),
        (ENV | {"FEATUREFLAG_MAX_TOKEN_TTL": "0"}, ["FEATUREFLAG_MAX_TOKEN_TTL"]),
    ],
)
def test_bad_environment_says_what_to_set(environ: dict[str, str], says: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings([], environ)
    for words in says:
        assert words in str(info.value)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "70000"], "--port"),
        (["--fork-domain", "http://qa.example.com"], "--fork-domain"),
        (["--fork-domain", "qa.example.com:8000"], "--fork-domain"),
        (["--fork-domain", ""], "--fork-domain"),
        (["--max-token-ttl", "-1"], "--max-token-ttl"),
    ],
)
def test_bad_options_say_which(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        load_settings(argv, ENV)


def test_loop_uvloop_without_the_package_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match="pip install uvloop"):
        load_settings(["--loop", "uvloop"], ENV)
    assert load_settings(["--loop", "asyncio"], ENV).loop == "asyncio"


def test_secrets_never_appear_in_messages_or_repr() -> None:
    secret_token = "supersecret-token-value-0123"
    with pytest.raises(ConfigurationError) as info:
        load_settings([], ENV | {"FEATUREFLAG_API_TOKENS": f"alice:{secret_token},bob"})
    assert secret_token not in str(info.value)
    s = load_settings([], ENV)
    assert SECRET not in repr(s) and "alice-token" not in repr(s)
    assert SECRET not in str(s.model_dump())


def test_authenticate() -> None:
    s = load_settings([], ENV)
    assert s.authenticate("alice-token-0123456789") == "alice"
    assert s.authenticate("bob-token-0123456789ab") == "bob"
    assert s.authenticate("alice-token-012345678") is None
    assert s.authenticate("") is None


@pytest.mark.parametrize(
    ("domain", "scheme", "port", "url"),
    [
        ("localhost", "http", 8000, "http://new-lp.localhost:8000/"),
        ("localhost", "http", 80, "http://new-lp.localhost/"),
        ("localhost", "http", None, "http://new-lp.localhost/"),
        ("qa.example.com", "https", 443, "https://new-lp.qa.example.com/"),
        ("qa.example.com", "https", 8443, "https://new-lp.qa.example.com:8443/"),
    ],
)
def test_fork_url(domain: str, scheme: str, port: int | None, url: str) -> None:
    s = Settings(secret=SECRET, fork_domain=domain)
    assert s.fork_url("new-lp", scheme, port) == url


def test_settings_can_be_built_directly_with_plain_values() -> None:
    s = Settings(secret=[SECRET, OLD], api_tokens={"alice": "alice-token-0123456789"})
    assert s.secret_values == [SECRET, OLD]
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(secret="short")


# -- the database --------------------------------------------------------------------

PG = "postgresql://ff:s3cret-password@db.internal:5432/featureflag"


def test_db_is_a_postgresql_url_or_a_file() -> None:
    assert load_settings(["--db", PG], ENV).db == PG
    assert load_settings(["--db", "postgres://db/ff"], ENV).db == "postgres://db/ff"
    assert load_settings(["--db", "ff.db"], ENV).db == Path("ff.db")


def test_db_from_the_environment_and_the_option_wins() -> None:
    assert load_settings([], ENV | {"FEATUREFLAG_DATABASE_URL": PG}).db == PG
    s = load_settings(["--db", "x.db"], ENV | {"FEATUREFLAG_DATABASE_URL": PG})
    assert s.db == Path("x.db")


def test_another_url_scheme_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigurationError, match="--db") as info:
        load_settings(["--db", "mysql://db/ff"], ENV)
    assert "postgresql://" in str(info.value)


def test_the_database_password_stays_out_of_repr_and_messages() -> None:
    s = load_settings(["--db", PG], ENV)
    assert "s3cret-password" not in repr(s)
    assert s.database == "postgresql://ff:***@db.internal:5432/featureflag"
    assert load_settings(["--db", "ff.db"], ENV).database == "ff.db"


def test_migrate_at_start_up_unless_told_not_to() -> None:
    assert load_settings([], ENV).migrate is True
    assert load_settings(["--no-migrate"], ENV).migrate is False


# -- API token scopes (issue 17 item 4) -----------------------------------------------------


def test_todays_format_gives_every_scope() -> None:
    settings = load_settings([], ENV)
    assert settings.scopes("alice") == {"read", "forks", "tokens", "gateway"}


def test_a_scoped_entry_names_its_scopes() -> None:
    tokens = TOKENS + ",ci:ci-token-0123456789ab:read+forks,gw:gw-token-0123456789ab:gateway"
    settings = load_settings([], ENV | {"FEATUREFLAG_API_TOKENS": tokens})
    assert settings.scopes("ci") == {"read", "forks"}
    assert settings.scopes("gw") == {"gateway"}
    assert settings.scopes("bob") == {"read", "forks", "tokens", "gateway"}
    assert settings.authenticate("ci-token-0123456789ab") == "ci"  # the scopes are not in it
    assert settings.authenticate("ci-token-0123456789ab:read+forks") is None


def test_a_token_with_a_colon_but_no_scope_list_keeps_it() -> None:
    tokens = "alice:alice:Token-0123456789"
    settings = load_settings([], ENV | {"FEATUREFLAG_API_TOKENS": tokens})
    assert settings.authenticate("alice:Token-0123456789") == "alice"
    assert settings.scopes("alice") == {"read", "forks", "tokens", "gateway"}


@pytest.mark.parametrize("scopes", ["raed", "read+admin", "all"])
def test_an_unknown_scope_stops_start_up_naming_it(scopes: str) -> None:
    # A typo must not silently become a token with every scope.
    tokens = f"ci:ci-token-0123456789ab:{scopes}"
    with pytest.raises(ConfigurationError) as caught:
        load_settings([], ENV | {"FEATUREFLAG_API_TOKENS": tokens})
    message = str(caught.value)
    assert "FEATUREFLAG_API_TOKENS" in message and "read+forks+tokens+gateway" in message
    assert "ci-token" not in message


def test_scoped_tokens_given_directly_as_one_string() -> None:
    settings = Settings(secret=SECRET, api_tokens="gw:gw-token-0123456789ab:gateway")
    assert settings.scopes("gw") == {"gateway"}


# --- issue 17, item 6: which server enforces which limit ----------------------------------


def test_on_uvicorn_the_limits_default_and_there_is_no_header_timeout() -> None:
    s = load_settings([], ENV)
    assert (s.server, s.http, s.max_header_bytes) == ("uvicorn", "h11", 64 * 1024)
    assert (s.header_timeout, s.keep_alive_timeout, s.max_connections) == (None, 5, 1000)


@pytest.mark.parametrize(
    ("argv", "timer"),
    [
        ([], 5),
        (["--header-timeout", "7"], 7),
        (["--keep-alive-timeout", "9"], 9),
        (["--header-timeout", "8", "--keep-alive-timeout", "8"], 8),
    ],
)
def test_on_granian_both_timeouts_are_its_one_header_timer(argv: list[str], timer: int) -> None:
    s = load_settings(["--server", "granian", *argv], ENV)
    assert (s.header_timeout, s.keep_alive_timeout) == (timer, timer)
    assert s.max_connections == 1000  # granian caps connections too


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--header-timeout", "3"], "--header-timeout needs --server granian"),
        (["--server", "granian", "--header-timeout", "3", "--keep-alive-timeout", "4"],
         "they are one timer"),
        (["--server", "granian", "--max-header-bytes", "8191"], "at least 8192"),
        (["--server", "granian", "--http", "httptools"], "granian parses with hyper"),
        (["--server", "granian", "--header-timeout", "0"], "--header-timeout is invalid"),
    ],
)  # fmt: skip
def test_limits_the_server_cannot_honour_stop_start_up(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as info:
        load_settings(argv, ENV)
    assert not str(info.value).startswith("settings is invalid")  # the message names options


def test_settings_built_directly_get_the_same_rules() -> None:
    on_granian = Settings(secret=SECRET, server="granian", header_timeout=2)
    assert (on_granian.keep_alive_timeout, on_granian.max_connections) == (2, 1000)
    with pytest.raises(ValueError, match="needs --server granian"):
        Settings(secret=SECRET, header_timeout=2)


def test_granian_without_the_package_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "granian" else real(name, *a),
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'featureflag\[granian\]'"):
        load_settings(["--server", "granian"], ENV)
