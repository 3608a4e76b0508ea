"""NAS-Bench-101 TFRecord import: framing and CRCs as specified, exact CSV round trip, corrupt input named by record.

Test files are written in the official format: TFRecord framing checked against a pure-Python CRC32C, and
ModelMetrics payloads hand-encoded in protobuf wire format (field numbers of the official model_metrics.proto),
independently of the message classes the importer builds.
"""

from __future__ import annotations

import base64
import json
import math
import random
import statistics
import struct
from pathlib import Path

import pandas as pd
import pytest

from nassearch.errors import DataError
from nassearch.evaluators.tabular import NasBench101Tabular
from nassearch.cli import main
from nassearch.data.nb101_import import COLUMNS, import_nasbench101, masked_crc32c, read_tfrecord, write_tfrecord
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench101_cell import parse_cell

SPACE = NasBench101Space()

EPOCHS = (4, 12, 36, 108)
METRICS = ("val_acc", "test_acc", "train_time_s")

# name -> (row-major VxV adjacency, ops, trainable parameters)
CELLS = {
    "seven": ("0111000000010100000100000100000001000000010000000",
              "input,conv3x3-bn-relu,conv1x1-bn-relu,conv1x1-bn-relu,conv3x3-bn-relu,maxpool3x3,output", 6491146),
    "six": ("011000000100000010000001000001000000",
            "input,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,conv3x3-bn-relu,output", 2783654),
    "five": ("0110000010000010000100000", "input,maxpool3x3,conv1x1-bn-relu,conv3x3-bn-relu,output", 1203210),
    "four": ("0111001000010000", "input,conv1x1-bn-relu,conv3x3-bn-relu,output", 906506),
    "two": ("0100", "input,output", 227274),
}


def cell_hash(name: str) -> str:
    """The cell's official NB101 fingerprint, as the official files store it."""
    adjacency, ops, _ = CELLS[name]
    return SPACE.key(parse_cell(f"{adjacency}|{ops}"))


# --------------------------------------------------------------------------------------- independent encoders


def crc32c_reference(data: bytes) -> int:
    """CRC32C, bit by bit: Castagnoli polynomial 0x82F63B78 (reflected), init and final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_reference(data: bytes) -> int:
    crc = crc32c_reference(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2 ** 32


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def double(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<d", value)


def model_metrics(evaluations: list[tuple[float, float, float, float, float]], params: int) -> bytes:
    """A serialized ModelMetrics; each evaluation is (epoch, training_time, train_acc, val_acc, test_acc)."""
    payload = b""
    for evaluation in evaluations:
        body = b"".join(double(number, value) for number, value in enumerate(evaluation, start=1))
        payload += length_delimited(1, body + length_delimited(6, b"gs://bucket/model.ckpt"))
    return payload + varint(2 << 3) + varint(params) + double(3, 1234.5)


def record(name: str, epochs: int, final: tuple[float, float, float], *, params: int | None = None,
           evaluations: int = 3, raw_metrics: str | None = None) -> bytes:
    """One record as the official file stores it; ``final`` = (val_acc, test_acc, training_time)."""
    adjacency, ops, default_params = CELLS[name]
    val, test, time = final
    history = [(0.0, 0.0, 0.1, 0.1, 0.1), (epochs / 2, time / 2, 0.5, 0.4, 0.3), (epochs, time, 1.0, val, test)]
    metrics = model_metrics(history[:evaluations], default_params if params is None else params)
    if raw_metrics is None:
        raw_metrics = base64.b64encode(metrics).decode()
    return json.dumps([cell_hash(name), epochs, adjacency, ops, raw_metrics]).encode()


def synthetic_runs(epochs: tuple[int, ...]) -> dict[tuple[str, int], list[tuple[float, float, float]]]:
    """Distinct dyadic (val, test, time) per cell, budget and repeat, so every mean is exact in any order."""
    runs = {}
    for c, name in enumerate(CELLS):
        for b, e in enumerate(epochs):
            repeats = 2 if (name, e) == ("five", 4) else 3
            runs[name, e] = [(0.5 + (c * 64 + b * 8 + k) / 2048, 0.25 + (c * 64 + b * 8 + k) / 4096,
                              100.0 * (c + 1) + 10 * b + k + 0.25) for k in range(repeats)]
    return runs


def write_runs(path: Path, runs: dict) -> list[bytes]:
    """Records of ``runs`` in a shuffled order that keeps each (cell, budget)'s repeats in run order."""
    keys = [key for key, values in runs.items() for _ in values]
    random.Random(0).shuffle(keys)
    seen: dict = {}
    records = []
    for name, e in keys:
        k = seen[name, e] = seen.get((name, e), -1) + 1
        records.append(record(name, e, runs[name, e][k]))
    write_tfrecord(path, records)
    return records


def expected_frame(runs: dict) -> pd.DataFrame:
    rows = []
    for name, (adjacency, ops, params) in CELLS.items():
        v = math.isqrt(len(adjacency))
        padded = "".join(adjacency[i * v:(i + 1) * v].ljust(7, "0") for i in range(v)).ljust(49, "0")

        def mean(e: int, m: int) -> float:
            values = [run[m] for run in runs.get((name, e), [])]
            return statistics.fmean(values) if values else math.nan

        row = {"hash": cell_hash(name), "num_vertices": v, "adjacency": padded, "ops": ops}
        row |= {f"val_acc_epoch{e}": mean(e, 0) for e in EPOCHS}
        row |= {"train_time_s": mean(108, 2), "trainable_params": params}
        for e in EPOCHS:
            row |= {f"test_acc_epoch{e}": mean(e, 1), f"train_time_s_epoch{e}": mean(e, 2)}
            values = runs.get((name, e), [])
            for k in range(3):
                row |= {f"{metric}_epoch{e}_run{k}": values[k][m] if k < len(values) else math.nan
                        for m, metric in enumerate(METRICS)}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("hash", ignore_index=True)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"hash": str, "adjacency": str, "ops": str})


def offsets(records: list[bytes]) -> list[int]:
    """Byte offset of each record: 8-byte length, 4-byte CRC, data, 4-byte CRC."""
    starts = [0]
    for data in records[:-1]:
        starts.append(starts[-1] + 16 + len(data))
    return starts


def one_line_error(func, *args, **kwargs) -> str:
    """The message of the DataError ``func(*args, **kwargs)`` raises, checked to be one line."""
    with pytest.raises(DataError) as info:
        func(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------------------- framing


def test_reference_crc32c_gives_the_standard_check_value():
    assert crc32c_reference(b"123456789") == 0xE3069283


def test_masked_crc_of_a_zero_length_follows_the_spec():
    zero_length = struct.pack("<Q", 0)
    assert masked_crc32c(zero_length) == masked_reference(zero_length) == 0x07980329


@pytest.mark.parametrize("data", [b"", b"nasbench", bytes(range(256))])
def test_written_bytes_follow_the_tfrecord_framing(tmp_path, data):
    path = tmp_path / "one.tfrecord"
    write_tfrecord(path, [data])
    length = struct.pack("<Q", len(data))
    assert path.read_bytes() == (length + struct.pack("<I", masked_reference(length))
                                 + data + struct.pack("<I", masked_reference(data)))


def test_write_then_read_round_trips_arbitrary_bytes(tmp_path):
    rng = random.Random(1)
    records = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (0, 1, 7, 8, 9, 255, 256, 4097)]
    records.append(b"\xff" * 70000)
    write_tfrecord(tmp_path / "r.tfrecord", records)
    assert list(read_tfrecord(tmp_path / "r.tfrecord")) == records


def test_empty_file_reads_as_no_records_and_imports_as_an_error(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert list(read_tfrecord(path)) == []
    assert "holds no records" in one_line_error(import_nasbench101, path, tmp_path / "out.csv")


def test_missing_file_is_reported(tmp_path):
    message = one_line_error(lambda p: list(read_tfrecord(p)), tmp_path / "absent.tfrecord")
    assert "absent.tfrecord" in message and "nasbench_only108.tfrecord" in message


@pytest.fixture
def small_file(tmp_path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "small.tfrecord"
    return path, write_runs(path, synthetic_runs((108,)))


def corrupted(path: Path, position: int) -> Path:
    payload = bytearray(path.read_bytes())
    payload[position] ^= 0x01
    path.write_bytes(bytes(payload))
    return path


@pytest.mark.parametrize("k", [0, 4, 14])
def test_a_flipped_data_byte_names_its_record(tmp_path, small_file, k):
    path, records = small_file
    start = offsets(records)[k]
    corrupted(path, start + 12 + len(records[k]) // 2)
    expected = f"record {k} (byte {start}) has a bad data CRC"
    assert expected in one_line_error(lambda p: list(read_tfrecord(p)), path)
    message = one_line_error(import_nasbench101, path, tmp_path / "out.csv")
    assert expected in message and str(path) in message and "corrupt" in message


@pytest.mark.parametrize("where", [8, 11, 0, 7])  # length CRC bytes, then the length itself
def test_a_corrupted_length_names_its_record(tmp_path, small_file, where):
    path, records = small_file
    start = offsets(records)[5]
    corrupted(path, start + where)
    assert f"record 5 (byte {start}) has a bad length CRC" in one_line_error(
        import_nasbench101, path, tmp_path / "out.csv")


@pytest.mark.parametrize("cut", ["header", "data", "data_crc"])
def test_a_truncated_file_is_reported(tmp_path, small_file, cut):
    path, records = small_file
    k = len(records) - 1
    start = offsets(records)[k]
    end = {"header": start + 5, "data": start + 12 + 3, "data_crc": start + 12 + len(records[k]) + 2}[cut]
    path.write_bytes(path.read_bytes()[:end])
    message = one_line_error(import_nasbench101, path, tmp_path / "out.csv")
    assert f"record {k} (byte {start}) is truncated" in message


# --------------------------------------------------------------------------------------- import


def test_import_round_trips_every_column_exactly(tmp_path):
    runs = synthetic_runs(EPOCHS)
    records = write_runs(tmp_path / "full.tfrecord", runs)
    report = import_nasbench101(tmp_path / "full.tfrecord", tmp_path / "nb101.csv")
    assert (report.records, report.cells, report.epochs) == (len(records), 5, EPOCHS)
    assert report.out_path == tmp_path / "nb101.csv"
    frame = read_csv(tmp_path / "nb101.csv")
    assert list(frame.columns) == list(COLUMNS)
    assert list(COLUMNS[:10]) == ["hash", "num_vertices", "adjacency", "ops", "val_acc_epoch4", "val_acc_epoch12",
                                  "val_acc_epoch36", "val_acc_epoch108", "train_time_s", "trainable_params"]
    assert list(COLUMNS[10:21]) == ["test_acc_epoch4", "train_time_s_epoch4"] + [
        f"{m}_epoch4_run{k}" for k in range(3) for m in METRICS]
    assert len(COLUMNS) == 10 + 4 * 11
    pd.testing.assert_frame_equal(frame, expected_frame(runs), check_exact=True)


def test_adjacency_is_padded_top_left_and_missing_repeats_are_nan(tmp_path):
    runs = synthetic_runs(EPOCHS)
    write_runs(tmp_path / "full.tfrecord", runs)
    import_nasbench101(tmp_path / "full.tfrecord", tmp_path / "nb101.csv")
    frame = read_csv(tmp_path / "nb101.csv").set_index("hash")
    two, four, five = (frame.loc[cell_hash(name)] for name in ("two", "four", "five"))
    assert two["adjacency"] == "0100000" + "0" * 42 and two["num_vertices"] == 2 and two["ops"] == "input,output"
    assert four["adjacency"] == "0111000" "0010000" "0001000" "0000000" + "0" * 21
    assert math.isnan(five["val_acc_epoch4_run2"]) and not math.isnan(five["val_acc_epoch4_run1"])
    assert five["val_acc_epoch4"] == (runs["five", 4][0][0] + runs["five", 4][1][0]) / 2


def test_only_108_epochs_leaves_the_other_budgets_nan(tmp_path, small_file):
    path, records = small_file
    report = import_nasbench101(path, tmp_path / "only108.csv")
    assert (report.records, report.cells, report.epochs) == (len(records), 5, (108,))
    frame = read_csv(tmp_path / "only108.csv")
    pd.testing.assert_frame_equal(frame, expected_frame(synthetic_runs((108,))), check_exact=True)
    absent = [c for c in COLUMNS if any(f"epoch{e}" in c and f"epoch{e}0" not in c for e in (4, 12, 36))]
    assert len(absent) == 3 * 12 and frame[absent].isna().all().all()
    assert frame["train_time_s"].equals(frame["train_time_s_epoch108"])


def test_gzip_output_when_the_name_ends_in_gz(tmp_path, small_file):
    path, _records = small_file
    import_nasbench101(path, tmp_path / "plain.csv")
    import_nasbench101(path, tmp_path / "sub" / "packed.csv.gz")
    assert (tmp_path / "sub" / "packed.csv.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "plain.csv").read_bytes().startswith(b"hash,num_vertices,adjacency,ops,")
    pd.testing.assert_frame_equal(read_csv(tmp_path / "sub" / "packed.csv.gz"), read_csv(tmp_path / "plain.csv"))


def with_record(path: Path, records: list[bytes], k: int, replacement: bytes) -> Path:
    write_tfrecord(path, records[:k] + [replacement] + records[k + 1:])
    return path


@pytest.mark.parametrize("bad, words", [
    (record("four", 108, (0.5, 0.5, 10.0), raw_metrics="not base64!"), "not a base64 ModelMetrics protobuf"),
    (record("four", 108, (0.5, 0.5, 10.0), raw_metrics=base64.b64encode(b"\x0a\xff").decode()),
     "not a base64 ModelMetrics protobuf"),
    (record("four", 108, (0.5, 0.5, 10.0), evaluations=2), "2 evaluation_data entries"),
    (b"{not json", "not a JSON row"),
    (json.dumps([cell_hash("four"), 108, "0101", "input,output", ""]).encode(), "adjacency '0101'"),
    (json.dumps([cell_hash("four"), 108, "0100", "input,conv5x5,output", ""]).encode(), "ops 'input,conv5x5,output'"),
    (json.dumps([cell_hash("four"), 100, "0100", "input,output", ""]).encode(), "epoch budget 100"),
])
def test_a_malformed_payload_names_its_record(tmp_path, small_file, bad, words):
    path, records = small_file
    start = offsets(records[:7] + [bad])[7]
    message = one_line_error(import_nasbench101, with_record(path, records, 7, bad), tmp_path / "out.csv")
    assert f"record 7 (byte {start})" in message and words in message


def test_records_that_disagree_on_a_cell_are_rejected(tmp_path, small_file):
    path, records = small_file
    k = max(i for i, data in enumerate(records) if json.loads(data)[0] == cell_hash("six"))
    bad = record("six", 108, (0.5, 0.5, 10.0), params=123)
    message = one_line_error(import_nasbench101, with_record(path, records, k, bad), tmp_path / "out.csv")
    assert f"record {k} " in message and "trainable_parameters 123" in message


def test_a_fourth_repeat_is_rejected(tmp_path, small_file):
    path, records = small_file
    write_tfrecord(path, records + [record("two", 108, (0.5, 0.5, 10.0))])
    message = one_line_error(import_nasbench101, path, tmp_path / "out.csv")
    assert f"record {len(records)} " in message and "beyond the 3" in message


def test_an_unwritable_output_is_reported(tmp_path, small_file):
    path, _records = small_file
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert "cannot write" in one_line_error(import_nasbench101, path, tmp_path / "blocker" / "out.csv")
    import_nasbench101(path, tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "out.csv", "small.tfrecord"]


def test_cli_import_feeds_the_tabular_evaluator(tmp_path, small_file, capsys):
    path, _ = small_file
    runs = synthetic_runs((108,))
    data_dir = tmp_path / "data"
    assert main(["data", "import", "nasbench101", str(path), "--data-dir", str(data_dir.mkdir() or data_dir)]) == 0
    assert "15 records, 5 cells, epochs 108" in capsys.readouterr().out
    evaluator = NasBench101Tabular(SPACE, data_dir=str(data_dir), tables=["nb101_official"])
    adjacency, ops, params = CELLS["seven"]
    result = evaluator.evaluate(parse_cell(f"{adjacency}|{ops}"))
    assert result.metrics["test_acc"] == pytest.approx(100 * statistics.mean(r[1] for r in runs["seven", 108]))
    assert result.metrics["val_acc"] == pytest.approx(100 * statistics.mean(r[0] for r in runs["seven", 108]))
    assert result.metrics["params"] == params / 1e6


def test_cli_import_of_a_corrupt_file_exits_non_zero_naming_the_record(tmp_path, small_file, capsys):
    path, records = small_file
    corrupted(path, offsets(records)[3] + 12 + 5)
    assert main(["data", "import", "nasbench101", str(path), "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nassearch: error: ") and "record 3 " in err and "\n" not in err
    assert not (tmp_path / "t.csv").exists()
