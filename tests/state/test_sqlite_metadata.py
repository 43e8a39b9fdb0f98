"""``state.sqlite`` metadata: Dapr's names and aliases, our defaults, errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.config.metadata import MetadataError
from edge_runtime.state.sqlite.metadata import SqliteMetadata, SqliteTarget, parse
from tests.support.state import MakeContext


def test_defaults(make_context: MakeContext, tmp_path: Path) -> None:
    settings, target = parse(make_context({"connectionString": "state.db"}))
    assert settings == SqliteMetadata(
        connection_string="state.db", timeout=20.0, busy_timeout=2.0, disable_wal=False,
        table_name="state", metadata_table_name="metadata", cleanup_interval=3600.0,
    )
    assert target == SqliteTarget(tmp_path / "state.db")


def test_dapr_names_case_insensitive(make_context: MakeContext) -> None:
    settings, _ = parse(
        make_context(
            {
                "connectionstring": "/var/lib/x.db",
                "TIMEOUT": "30s",
                "busyTimeout": "500ms",
                "disableWAL": "true",
                "tableName": "my_state_2",
                "metadataTableName": "meta_x",
                "cleanupInterval": "10m",
                "keyPrefix": "name",
                "actorStateStore": "true",
            }
        )
    )
    assert (settings.timeout, settings.busy_timeout, settings.disable_wal) == (30.0, 0.5, True)
    assert (settings.table_name, settings.metadata_table_name) == ("my_state_2", "meta_x")
    assert settings.cleanup_interval == 600.0


def test_aliases_take_plain_seconds(make_context: MakeContext, tmp_path: Path) -> None:
    settings, target = parse(
        make_context(
            {"url": "sub/dir/s.db", "timeoutInSeconds": "5", "cleanupIntervalInSeconds": "0"}
        )
    )
    assert (settings.timeout, settings.cleanup_interval) == (5.0, 0.0)
    assert target.path == tmp_path / "sub/dir/s.db"


def test_negative_cleanup_interval_disables(make_context: MakeContext) -> None:
    settings, _ = parse(make_context({"connectionString": "s.db", "cleanupInterval": "-1"}))
    assert settings.cleanup_interval < 0


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        (":memory:", SqliteTarget(None)),
        ("file::memory:", SqliteTarget(None)),
        ("file::memory:?cache=shared", SqliteTarget(None)),
        ("file:x.db?mode=memory&cache=shared", SqliteTarget(None)),
        ("/abs/s.db", SqliteTarget(Path("/abs/s.db"))),
        ("file:/abs/s.db?_txlock=immediate", SqliteTarget(Path("/abs/s.db"))),
        ("file:///abs/my%20s.db", SqliteTarget(Path("/abs/my s.db"))),
        ("file:/abs/s.db?mode=ro", SqliteTarget(Path("/abs/s.db"), read_only=True)),
        (
            "file:/abs/s.db?immutable=1",
            SqliteTarget(Path("/abs/s.db"), read_only=True, immutable=True),
        ),
        ("file:/abs/s.db?_pragma=foreign_keys(1)", SqliteTarget(Path("/abs/s.db"))),
    ],
)
def test_connection_strings(make_context: MakeContext, conn: str, expected: SqliteTarget) -> None:
    _, target = parse(make_context({"connectionString": conn}))
    assert target == expected


def test_relative_file_uri_resolves_under_data_dir(
    make_context: MakeContext, tmp_path: Path
) -> None:
    _, target = parse(make_context({"connectionString": "file:data/s.db?mode=rwc"}))
    assert target.path == tmp_path / "data/s.db"


def one_problem(exc: pytest.ExceptionInfo[MetadataError]) -> str:
    assert len(exc.value.problems) == 1
    return str(exc.value.problems[0])


@pytest.mark.parametrize(
    ("conn", "needle"),
    [
        ("file:s.db?_pragma=busy_timeout(5000)", "busyTimeout"),
        ("file:s.db?_pragma=journal_mode(WAL)", "disableWAL"),
        ("file:s.db?_pragma=JOURNAL_MODE%3DDELETE", "disableWAL"),
        ("file://otherhost/s.db", "host"),
        ("", "required"),
    ],
)
def test_bad_connection_strings(make_context: MakeContext, conn: str, needle: str) -> None:
    with pytest.raises(MetadataError) as exc:
        parse(make_context({"timeout": "5s", "connectionString": conn}))
    text = one_problem(exc)
    assert "components/statestore.yaml:12" in text  # the second entry's line
    assert "connectionString" in text
    assert needle in text


def test_missing_connection_string_points_at_the_component(make_context: MakeContext) -> None:
    with pytest.raises(MetadataError) as exc:
        parse(make_context({"tableName": "x"}))
    text = one_problem(exc)
    assert "components/statestore.yaml:3" in text
    assert "connectionString" in text
    assert "required" in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", "500ms"),  # below Dapr's 1 s minimum
        ("timeout", "soon"),
        ("timeoutInSeconds", "0"),
        ("busyTimeout", "forever"),
        ("disableWAL", "maybe"),
        ("cleanupInterval", "1 hour"),
    ],
)
def test_bad_values_name_the_field_and_line(
    make_context: MakeContext, name: str, value: str
) -> None:
    with pytest.raises(MetadataError) as exc:
        parse(make_context({"connectionString": "s.db", name: value}))
    text = one_problem(exc)
    assert "components/statestore.yaml:12" in text
    assert f"spec.metadata.{name}" in text
    assert repr(value) in text


@pytest.mark.parametrize("name", ["tableName", "metadataTableName"])
@pytest.mark.parametrize("value", ["state; DROP TABLE x", "my-table", "", "tåble"])
def test_table_names_are_identifiers(make_context: MakeContext, name: str, value: str) -> None:
    with pytest.raises(MetadataError) as exc:
        parse(make_context({"connectionString": "s.db", name: value}))
    text = one_problem(exc)
    assert "components/statestore.yaml:12" in text
    assert f"spec.metadata.{name}" in text


def test_every_problem_is_reported_at_once(make_context: MakeContext) -> None:
    with pytest.raises(MetadataError) as exc:
        parse(make_context({"connectionString": "s.db", "timeout": "x", "busyTimeout": "y"}))
    assert len(exc.value.problems) == 2
