"""``nassearch retrain ARCH_OR_RUN_DIR --config RECIPE``: any space's network trained on an ImageFolder dataset as a
recipe says; logs and records, a killed run resumed, DDP on Gloo, user errors, and the digits learning check."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nassearch.cli import main
from nassearch.spaces.darts_notation import format_genotype
from nassearch.spaces.darts_genotypes import known_genotype
from nassearch.training.imagefolder import write_digits_imagefolder, write_synthetic_imagefolder
from nassearch.training.recipe_training import LOG_COLUMNS
from tests.test_cli import one_line_error
from tests.test_retrain import kill_after_first_epoch

REPO = Path(__file__).resolve().parents[1]
MOBILENET = REPO / "experiments" / "retrain_mobilenet_imagenet.yaml"
PROXYLESS = REPO / "experiments" / "retrain_proxyless_imagenet.yaml"
DIGITS = REPO / "experiments" / "retrain_digits_check.yaml"
#: The smallest OFA subnet (kernel 3, expansion 3, depth 2 everywhere).
OFA_ARCH = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 160}, separators=(",", ":"))
PROXYLESS_ARCH = str(tuple([1] * 22))
TINY_WIDTHS = "model={widths: {stem: 8, first: 8, stages: [8, 8, 16, 16, 16, 16], last: 32}}"
SHRINK = ["--set", "epochs=2", "--set", "batch_size=8", "--set", "image_size=32", "--set", "num_workers=0",
          "--threads", "1"]
#: space -> (architecture, recipe, settings that shrink or fit it)
NETWORKS = {
    "ofa_mbv3": (OFA_ARCH, MOBILENET, ["--set", "autoaugment=false"]),
    "proxylessnas": (PROXYLESS_ARCH, PROXYLESS, ["--set", "holdout=6", "--set", "warmup_epochs=0.5", "--set",
                                                 TINY_WIDTHS]),
}


def _args(space, data, out, *extra):
    arch, recipe, settings = NETWORKS[space]
    return ["retrain", arch, "--space", space, "--config", str(recipe), *SHRINK, *settings, "--data-root", str(data),
            "--out", str(out), *extra]


def _log(out, drop=("seconds", "images_per_s")):
    with (out / "log.csv").open() as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_imagefolder(tmp_path_factory.mktemp("imagefolder") / "data", classes=3, train_per_class=8,
                                       val_per_class=4, size=32)


@pytest.fixture(scope="module")
def proxyless_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "proxyless"
    assert main(_args("proxylessnas", data, out)) == 0
    return out


# ---------------------------------------------------------------------------------------------
# Training both spaces' networks


def test_proxylessnas_network_trains_and_records(proxyless_run, capsys):
    log = _log(proxyless_run, drop=())
    assert [row["epoch"] for row in log] == ["1", "2"] and list(log[0]) == list(LOG_COLUMNS)
    assert all(0 <= float(row["val_top1"]) <= float(row["val_top5"]) == 100.0 for row in log)  # 3 classes
    result = json.loads((proxyless_run / "retrain.json").read_text())
    assert result["space"] == "proxylessnas" and result["world_size"] == 1 and result["eval_split"] == "holdout"
    assert result["top1"] == float(log[-1]["val_top1"]) and result["top5"] == 100.0
    assert 0 < result["params_m"] < 0.1 < result["space_params_m"] and result["flops_m"] > 100  # tiny widths trained
    record = yaml.safe_load((proxyless_run / "config.yaml").read_text())
    assert record["recipe"]["optimizer"] == "rmsprop_tf" and record["recipe"]["model"]["widths"]["last"] == 32


def test_ofa_mbv3_network_trains_and_records(data, tmp_path):
    out = tmp_path / "ofa"
    assert main(_args("ofa_mbv3", data, out, "--set", "init=he_fan_out", "--set", "channels_last=true")) == 0
    log = _log(out)
    assert [row["epoch"] for row in log] == ["1", "2"]
    lrs = [float(row["lr"]) for row in log]
    assert lrs[0] == pytest.approx(0.5 * 8 / 1024) and 0 < lrs[1] < lrs[0]  # scaled to the batch, cosine per step
    result = json.loads((out / "retrain.json").read_text())
    assert result["space"] == "ofa_mbv3" and result["eval_split"] == "val" and result["classes"] == 3
    assert result["flops_m"] > 0 and result["params_m"] > 1


def test_run_directory_gives_its_space_and_best_architecture(data, tmp_path, capsys):
    run_dir = tmp_path / "search"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"space": {"name": "proxylessnas"},
                                                         "objectives": [{"metric": "val_acc", "mode": "max"}]}))
    for seed, (arch, acc) in enumerate([(tuple([0] * 22), 70.0), (tuple([1] * 22), 75.0)]):
        (run_dir / f"seed-{seed}").mkdir()
        (run_dir / f"seed-{seed}" / "summary.json").write_text(
            json.dumps({"best": {"arch": str(arch), "metrics": {"val_acc": acc}}}))
    args = _args("proxylessnas", data, tmp_path / "out", "--set", "epochs=1")
    args[1:4] = [str(run_dir)]  # the run directory instead of ARCH --space NAME
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "retrain.json").read_text())
    assert result["arch"] == PROXYLESS_ARCH and "seed-1" in result["source"] and result["name"] == "search"
    args[1:2] = [str(run_dir), "--space", "ofa_mbv3"]
    assert "searched space 'proxylessnas', not --space ofa_mbv3" in one_line_error(capsys, args)


@pytest.mark.parametrize("space, arch, model", [
    ("nasbench201", "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|", {}),
    ("nasbench101", "011001000|input,conv3x3-bn-relu,output", {}),
    ("darts", "DARTS_V2", {"init_channels": 4, "layers": 3, "auxiliary": False}),
])
def test_every_space_with_a_network_trains_from_a_recipe(data, tmp_path, space, arch, model):
    out = tmp_path / space
    args = ["retrain", arch, "--space", space, "--config", str(DIGITS), "--set", "epochs=1", "--set",
            "warmup_epochs=0", "--set", "batch_size=8", "--set", f"model={json.dumps(model)}", "--threads", "1",
            "--data-root", str(data), "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "retrain.json").read_text())
    assert result["space"] == space and result["classes"] == 3 and len(_log(out)) == 1


# ---------------------------------------------------------------------------------------------
# User errors


def test_changed_recipe_refuses_resume(proxyless_run, capsys, data):
    err = one_line_error(capsys, _args("proxylessnas", data, proxyless_run, "--resume", "--set", "label_smoothing=0"))
    assert "was started with label_smoothing=0.1, not 0.0" in err
    err = one_line_error(capsys, _args("proxylessnas", data, proxyless_run))
    assert "already holds a retrain run: continue it with --resume" in err
    assert main(_args("proxylessnas", data, proxyless_run, "--resume", "--set", "num_workers=1")) == 0  # all done


def test_bad_inputs_are_one_line(capsys, data, tmp_path):
    err = one_line_error(capsys, _args("proxylessnas", tmp_path / "none", tmp_path / "out"))
    assert "image dataset not found: no folder" in err
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start
    args = _args("proxylessnas", data, tmp_path / "out")
    args[args.index("--space") + 1] = "mobilenet"
    assert "unknown space 'mobilenet'; known:" in one_line_error(capsys, args)
    args = _args("proxylessnas", data, tmp_path / "out")
    del args[2:4]  # no --space
    assert "no such run directory; to train an architecture string, name its space with --space" in \
        one_line_error(capsys, args)
    err = one_line_error(capsys, _args("proxylessnas", data, tmp_path / "out", "--set", "model={depth: 3}"))
    assert "proxylessnas's build_model takes widths, dropout keyword(s), not depth" in err
    err = one_line_error(capsys, ["retrain", "DARTS_V2", "--space", "darts"])
    assert "--space applies to recipes only" in err
    err = one_line_error(capsys, _args("proxylessnas", data, tmp_path / "out", "--set", "batch_size=64"))
    assert "batch_size: 64 is more than the 18 training images; choose a smaller batch_size" in err
    assert not (tmp_path / "out").exists()


def test_bad_datasets_are_one_line(capsys, tmp_path):
    """An empty ImageFolder, train and val with different classes, and a corrupt JPEG read by a loader worker
    process (an error naming the file, not a skip: skipping would shift the hold-out split) each give one line."""
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    err = one_line_error(capsys, _args("proxylessnas", empty, tmp_path / "out-empty"))
    assert f"{empty / 'train'} holds no class folders" in err
    other = write_synthetic_imagefolder(tmp_path / "other", classes=3, train_per_class=8, val_per_class=2, size=32)
    (other / "val" / "n00000002").rename(other / "val" / "n00000009")
    err = one_line_error(capsys, _args("ofa_mbv3", other, tmp_path / "out-classes"))
    assert "train/ and val/ hold different classes: n00000002 is in train/ but not in val/" in err
    corrupt = write_synthetic_imagefolder(tmp_path / "corrupt", classes=3, train_per_class=8, val_per_class=2, size=32)
    bad = corrupt / "train" / "n00000001" / "n00000001_2.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    err = one_line_error(capsys, _args("proxylessnas", corrupt, tmp_path / "out-corrupt", "--set", "num_workers=2"))
    assert f"cannot read image {bad} (Truncated File Read); replace it with an intact copy" in err


# ---------------------------------------------------------------------------------------------
# Killed after epoch 1 and resumed; DDP under torchrun


def _command(*args):
    return [sys.executable, "-m", "nassearch", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_log(data, tmp_path):
    killed = tmp_path / "killed"
    kill_after_first_epoch(_command(*_args("proxylessnas", data, killed)), ENV, killed, timeout=120)
    resumed = subprocess.run(_command(*_args("proxylessnas", data, killed, "--resume")), env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "epoch 1/2" not in resumed.stderr
    clean = tmp_path / "clean"
    assert main(_args("proxylessnas", data, clean)) == 0
    assert [row["epoch"] for row in _log(killed)] == ["1", "2"]
    assert _log(killed) == _log(clean)


@pytest.mark.slow
def test_two_processes_under_torchrun(data, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "nassearch",
               *_args("proxylessnas", data, out, "--device", "cpu")]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "retrain.json").read_text())
    assert result["world_size"] == 2 and len(_log(out)) == 2
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.pt", "config.yaml", "log.csv", "retrain.json"]
    assert done.stdout.count("output:") == 1  # only rank 0 reports



# ---------------------------------------------------------------------------------------------
# The real-data learning check: scikit-learn's handwritten digits

#: space -> (architecture, settings): a tiny network of each space; ofa_mbv3's smallest subnet at its own widths.
DIGITS_NETWORKS = {
    "ofa_mbv3": (OFA_ARCH, []),
    "proxylessnas": (PROXYLESS_ARCH, ["--set", "epochs=8", "--set",
                                      "model={widths: {stem: 16, first: 16, stages: [16, 24, 32, 48, 64, 96], "
                                      "last: 256}}"]),
    "darts": (format_genotype(known_genotype("DARTS_V2")),
              ["--set", "model={init_channels: 8, layers: 5, auxiliary: false}"]),
}


@pytest.mark.slow
def test_digits_learning_check(tmp_path, capsys):
    """Each space's network, trained by the recipe pipeline on 1,437 real digit images, classifies the 360 held-out
    ones at >= 90% top-1 (chance: 10%), all three in under 5 minutes on 2 cores."""
    digits = write_digits_imagefolder(tmp_path / "digits", size=32)
    accuracies, seconds, start = {}, {}, time.perf_counter()
    for space, (arch, settings) in DIGITS_NETWORKS.items():
        network_start = time.perf_counter()
        out = tmp_path / space
        assert main(["retrain", arch, "--space", space, "--config", str(DIGITS), "--threads", "2", *settings,
                     "--data-root", str(digits), "--out", str(out)]) == 0
        result = json.loads((out / "retrain.json").read_text())
        assert result["eval_split"] == "val" and result["classes"] == 10
        accuracies[space] = round(result["top1"], 2)
        seconds[space] = round(time.perf_counter() - network_start)
    wall = time.perf_counter() - start
    with capsys.disabled():
        print(f"\ndigits held-out top-1 (%): {accuracies}; seconds: {seconds}, {wall:.0f} s for all three")
    assert all(accuracy >= 90 for accuracy in accuracies.values()), accuracies
    assert wall < 300
