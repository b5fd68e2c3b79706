"""Settings: env parsing, CLI precedence, refusals, and one flag per setting on every command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from eventscope.backend.settings import (
    SETTINGS_FIELDS,
    Settings,
    env_name,
    flag_name,
    load_settings,
    unknown_variables,
)
from eventscope.web.cli import build_parser, main, settings_from_args

ALL_INTERFACES = "0.0.0.0"  # noqa: S104


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_env_values(raw: str, expected: bool) -> None:
    assert load_settings({"EVENTSCOPE_DEMO": raw}).demo is expected


def test_unknown_boolean_is_refused_with_the_variable_name() -> None:
    with pytest.raises(ValueError, match="EVENTSCOPE_DEMO"):
        load_settings({"EVENTSCOPE_DEMO": "maybe"})


def test_integer_and_float_env_values() -> None:
    settings = load_settings(
        {"EVENTSCOPE_PORT": "9001", "EVENTSCOPE_PREFETCH": "50", "EVENTSCOPE_DEMO_RATE": "2.5"}
    )
    assert (settings.port, settings.prefetch, settings.demo_rate) == (9001, 50, 2.5)


def test_bad_integer_is_refused_with_the_variable_name() -> None:
    with pytest.raises(ValueError, match="EVENTSCOPE_PORT"):
        load_settings({"EVENTSCOPE_PORT": "eighty"})


def test_comma_separated_exchanges_are_trimmed_and_empty_parts_dropped() -> None:
    settings = load_settings({"EVENTSCOPE_EXCHANGES": " orders , payments,,events.dlx "})
    assert settings.exchanges == ("orders", "payments", "events.dlx")


def test_string_env_values_are_kept_verbatim() -> None:
    settings = load_settings({"EVENTSCOPE_TOKEN": " s3cret ", "EVENTSCOPE_TAP_QUEUE": "my.tap"})
    assert settings.token == " s3cret "
    assert settings.tap_queue == "my.tap"


def test_defaults_without_environment() -> None:
    assert load_settings({}) == Settings()


def test_unrelated_environment_is_ignored() -> None:
    assert load_settings({"PORT": "1", "EVENTSCOPE": "x", "eventscope_port": "2"}) == Settings()


def test_explicit_overrides_win_over_the_environment() -> None:
    settings = load_settings(
        {"EVENTSCOPE_PORT": "9000", "EVENTSCOPE_EXCHANGES": "from-env"},
        {"port": 9001, "exchanges": ("from-cli",), "host": None},
    )
    assert settings.port == 9001
    assert settings.exchanges == ("from-cli",)
    assert settings.host == "127.0.0.1"


def test_cli_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSCOPE_PORT", "9000")
    monkeypatch.setenv("EVENTSCOPE_TAP_QUEUE", "env.tap")
    monkeypatch.setenv("EVENTSCOPE_EXCHANGES", "env-exchange")
    args = build_parser().parse_args(["serve", "--port", "9001", "--exchanges", "a, b"])
    settings = settings_from_args(args)
    assert settings.port == 9001
    assert settings.exchanges == ("a", "b")
    assert settings.tap_queue == "env.tap"


def test_cli_boolean_flag_sets_true(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTSCOPE_DEMO", raising=False)
    args = build_parser().parse_args(["serve", "--demo"])
    assert settings_from_args(args).demo is True


def test_bad_cli_value_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--port", "eighty"])


@pytest.mark.parametrize("host", [ALL_INTERFACES, "::", "192.168.1.10", "example.com"])
def test_no_auth_on_a_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="--no-auth"):
        load_settings({}, {"no_auth": True, "host": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_no_auth_on_loopback_is_allowed(host: str) -> None:
    assert load_settings({}, {"no_auth": True, "host": host}).no_auth is True


def test_no_auth_from_env_on_all_interfaces_is_refused() -> None:
    with pytest.raises(ValueError, match="--no-auth"):
        load_settings({"EVENTSCOPE_NO_AUTH": "1", "EVENTSCOPE_HOST": ALL_INTERFACES})


@pytest.mark.parametrize(
    ("env", "overrides"),
    [
        ({"EVENTSCOPE_EXCHANGES": ""}, {}),
        ({"EVENTSCOPE_EXCHANGES": " , "}, {}),
        ({}, {"exchanges": ("",)}),
        ({}, {"exchanges": ("events", "")}),
        ({}, {"exchanges": ()}),
    ],
    ids=["empty-env", "only-commas", "default-exchange", "default-among-others", "none"],
)
def test_empty_exchange_is_refused(env: dict[str, str], overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="EVENTSCOPE_EXCHANGES"):
        load_settings(env, overrides)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prefetch", "0"),
        ("batch_max_events", "0"),
        ("page_size", "-1"),
        ("live_rows", "0"),
        ("tap_queue_type", "stream"),
        ("batch_max_wait_ms", "-5"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=env_name(name)):
        load_settings({env_name(name): value})


def test_secrets_are_redacted() -> None:
    settings = load_settings({}, {"token": "s3cret", "amqp_url": "amqp://u:pw@h/"})
    shown = settings.redacted()
    assert "s3cret" not in str(shown)
    assert "pw" not in str(shown["amqp_url"])
    assert shown["port"] == settings.port


def test_every_setting_has_help_text() -> None:
    for f in SETTINGS_FIELDS:
        assert f.metadata["help"].strip(), f.name


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub)
                if nested:
                    found.update({f"{name} {k}": v for k, v in nested.items()})
                else:
                    found[name] = sub
    return found


def test_cli_has_its_commands() -> None:
    assert set(_subcommands(build_parser())) == {
        "serve",
        "ingest",
        "demo",
        "db upgrade",
        "hash-password",
        "reindex",
        "export",
        "replay",
    }


@pytest.mark.parametrize("command", ["serve", "ingest", "demo", "db upgrade"])
def test_every_setting_is_a_flag_on_every_command(command: str) -> None:
    sub = _subcommands(build_parser())[command]
    flags = set(sub._option_string_actions)
    missing = [flag_name(f.name) for f in SETTINGS_FIELDS if flag_name(f.name) not in flags]
    assert missing == []


@pytest.mark.parametrize("command", [["serve"], ["ingest"], ["demo"], ["db", "upgrade"]])
def test_every_flag_parses_to_its_setting(command: list[str]) -> None:
    argv = list(command)
    expected: dict[str, object] = {}
    samples = {bool: None, int: ("7", 7), float: ("0.5", 0.5), tuple: ("x,y", ("x", "y"))}
    for f in SETTINGS_FIELDS:
        default = f.default
        kind = type(default) if not isinstance(default, tuple) else tuple
        if isinstance(default, bool):
            argv.append(flag_name(f.name))
            expected[f.name] = True
        elif sample := samples.get(kind):
            raw, value = sample
            argv += [flag_name(f.name), raw]
            expected[f.name] = value
        else:
            argv += [flag_name(f.name), f"v-{f.name}"]
            expected[f.name] = f"v-{f.name}"
    args = build_parser().parse_args(argv)
    assert {name: getattr(args, name) for name in expected} == expected


def test_served_hosts_include_loopback_and_the_port() -> None:
    hosts = load_settings({}, {"port": 8123}).hosts
    assert {"localhost", "localhost:8123", "127.0.0.1:8123", "[::1]:8123"} <= set(hosts)
    assert "evil.example" not in hosts
    assert load_settings({}, {"host": ALL_INTERFACES}).hosts == ["*"]
    assert "ui.example:8000" in load_settings({}, {"allowed_hosts": ("ui.example",)}).hosts


def test_unknown_eventscope_variables_are_named_with_the_closest_setting() -> None:
    env = {
        "EVENTSCOPE_DATABSE_URL": "sqlite+aiosqlite:///x.db",
        "EVENTSCOPE_PORT": "1",
        "EVENTSCOPE_URL": "http://127.0.0.1:8000",  # the test client's, not a setting
        "EVENTSCOPE_ZZZ": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        "EVENTSCOPE_DATABSE_URL (did you mean EVENTSCOPE_DATABASE_URL?)",
        "EVENTSCOPE_ZZZ",
    ]


def test_the_cli_warns_about_a_misspelt_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EVENTSCOPE_TAP_QUEUE_MAX_LENGHT", "5")
    main(["db", "upgrade", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db"])
    assert any(
        "EVENTSCOPE_TAP_QUEUE_MAX_LENGHT (did you mean EVENTSCOPE_TAP_QUEUE_MAX_LENGTH?) is not "
        "an eventscope setting" in r.getMessage()
        for r in caplog.records
    )
