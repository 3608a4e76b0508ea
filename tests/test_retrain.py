"""``nassearch retrain``: the DARTS protocol's config, loss and schedules, targets, and a killed run resumed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nassearch.training.datasets import write_synthetic_cifar10
from nassearch.training.retrain import RetrainConfig, load_retrain_config, resolve_target
from nassearch.training.loops import classification_loss, train_epoch
from nassearch.errors import ConfigError, RunDirError
from nassearch.spaces.darts_notation import format_genotype
from nassearch.spaces.darts_genotypes import known_genotype
from tests.test_cli import one_line_error

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "experiments" / "darts_retrain.yaml"
TINY = ["--set", "epochs=2", "--set", "layers=3", "--set", "init_channels=4", "--set", "batch_size=16",
        "--set", "num_workers=0", "--set", "verify_md5=false"]


# ---------------------------------------------------------------------------------------------
# Config and schedules


def test_yaml_is_the_darts_protocol_and_overrides_apply():
    assert load_retrain_config(YAML) == RetrainConfig()
    protocol = RetrainConfig()
    assert (protocol.epochs, protocol.batch_size, protocol.learning_rate, protocol.cutout_length, protocol.layers,
            protocol.init_channels, protocol.auxiliary_weight, protocol.drop_path_prob) == (600, 96, 0.025, 16, 20,
                                                                                           36, 0.4, 0.2)
    config = load_retrain_config(YAML, ["epochs=2", "max_train_batches=3", "learning_rate=1"])
    assert (config.epochs, config.max_train_batches, config.learning_rate) == (2, 3, 1.0)


@pytest.mark.parametrize("override, message", [
    ("epoch=2", "epoch: unknown key in a retrain config (did you mean 'epochs'?); allowed: epochs, batch_size"),
    ("cutout=yes please", "cutout: expected bool, got str 'yes please'"),
    ("drop_path_prob=1.5", "drop_path_prob: must lie in [0, 1), got 1.5"),
    ("max_train_batches=0", "max_train_batches: must be > 0, got 0"),
])
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_retrain_config(YAML, [override])
    assert message in str(error.value)


def test_drop_path_grows_linearly_from_zero():
    config = RetrainConfig()
    assert config.drop_path_at(0) == 0.0
    assert config.drop_path_at(300) == pytest.approx(0.1)
    assert config.drop_path_at(599) == pytest.approx(0.2 * 599 / 600)


class TwoHeads(nn.Module):
    """A stand-in for NetworkCIFAR: (logits, auxiliary logits) in training, (logits, None) in eval."""

    def __init__(self):
        super().__init__()
        self.main, self.aux = nn.Linear(5, 3), nn.Linear(5, 3)

    def forward(self, x):
        return self.main(x), (self.aux(x) if self.training else None)


def test_step_loss_is_cross_entropy_plus_weighted_auxiliary():
    torch.manual_seed(0)
    model, x, y = TwoHeads(), torch.randn(8, 5), torch.randint(3, (8,))
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        logits, aux = model(x)
        expected = {0.4: ce(logits, y) + 0.4 * ce(aux, y), 0.0: ce(logits, y)}
    for weight, loss in expected.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        totals = train_epoch(model, DataLoader(TensorDataset(x, y), batch_size=8), optimizer, torch.device("cpu"),
                             grad_clip=5.0, auxiliary_weight=weight)
        assert totals[0].item() / 8 == pytest.approx(loss.item(), rel=1e-6)
    assert classification_loss(logits, y)[0].item() == pytest.approx(ce(logits, y).item())
    assert classification_loss((logits, None), y, 0.4)[0].item() == pytest.approx(ce(logits, y).item())


# ---------------------------------------------------------------------------------------------
# What to train


def test_targets_by_name_string_and_search_run(tmp_path):
    darts_v2 = known_genotype("DARTS_V2")
    assert resolve_target("DARTS_V2").genotype == darts_v2
    from_string = resolve_target(format_genotype(darts_v2))
    assert from_string.genotype == darts_v2 and from_string.name.startswith("genotype-")

    run_dir = tmp_path / "search"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"space": {"name": "darts"},
                                                         "objectives": [{"metric": "val_acc", "mode": "max"}]}))
    for seed, (name, acc) in enumerate([("DARTS_V1", 91.0), ("PC_DARTS", 93.5), ("NASNet", 92.0)]):
        (run_dir / f"seed-{seed}").mkdir()
        best = {"best": {"arch": format_genotype(known_genotype(name)), "metrics": {"val_acc": acc}}}
        (run_dir / f"seed-{seed}" / "summary.json").write_text(json.dumps(best))
    target = resolve_target(str(run_dir))
    assert target.genotype == known_genotype("PC_DARTS") and target.name == "search" and "seed-1" in target.source

    (run_dir / "config.yaml").write_text(yaml.safe_dump({"space": {"name": "nasbench201"}, "objectives": []}))
    with pytest.raises(RunDirError, match="searched space 'nasbench201'; retrain trains genotypes of the darts"):
        resolve_target(str(run_dir))


def test_cli_user_errors_are_one_line(capsys, tmp_path):
    assert "unknown DARTS genotype name 'DARTS_V9'" in one_line_error(capsys, ["retrain", "DARTS_V9"])
    err = one_line_error(capsys, ["retrain", "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2])"])
    assert "Genotype" in err
    err = one_line_error(capsys, ["retrain", "DARTS_V2", "--config", str(YAML), "--set", "epoch=3"])
    assert "epoch: unknown key" in err and "allowed: epochs" in err
    err = one_line_error(capsys, ["retrain", "DARTS_V2", "--set", f"data_root={tmp_path / 'none'}",
                                  "--out", str(tmp_path / "out")])
    assert "CIFAR-10 not found" in err and "download: true" in err
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start
    err = one_line_error(capsys, ["retrain", "DARTS_V2", "--resume", "--out", str(tmp_path / "out")])
    assert "holds no retrain run" in err


# ---------------------------------------------------------------------------------------------
# End to end: killed after epoch 1, resumed, compared with an uninterrupted run


def _nassearch(*args):
    return [sys.executable, "-m", "nassearch", "retrain", "DARTS_V2", "--config", str(YAML), *TINY, *args]


def _log(out):
    with (out / "log.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def kill_after_first_epoch(command: list[str], env: dict[str, str], out: Path, timeout: float) -> None:
    """Start a retrain ``command`` and SIGKILL it once ``out/log.csv`` holds its first epoch."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ((out / "log.csv").exists() and len(_log(out)) == 1):
        time.sleep(0.01)
    assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "retrain.json").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_log(tmp_path):
    write_synthetic_cifar10(tmp_path / "cifar", n_train=160, n_test=24)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    common = ["--set", f"data_root={tmp_path / 'cifar'}"]
    killed = tmp_path / "killed"
    kill_after_first_epoch(_nassearch(*common, "--out", str(killed)), env, killed, timeout=60)

    refused = subprocess.run(_nassearch(*common, "--out", str(killed)), env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "already holds a retrain run: continue it with --resume" in refused.stderr
    changed = subprocess.run(_nassearch(*common, "--set", "seed=1", "--out", str(killed), "--resume"), env=env,
                             capture_output=True, text=True)
    assert changed.returncode == 2 and "was started with seed=0, not 1" in changed.stderr
    resumed = subprocess.run(_nassearch(*common, "--out", str(killed), "--resume"), env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "epoch 1/2" not in resumed.stderr and "test accuracy" in resumed.stdout
    clean = tmp_path / "clean"
    uninterrupted = subprocess.run(_nassearch(*common, "--out", str(clean)), env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    log = _log(killed)
    assert [row["epoch"] for row in log] == ["1", "2"]
    assert log == _log(clean)
    assert [float(row["drop_path_prob"]) for row in log] == [0.0, 0.1]
    result = json.loads((killed / "retrain.json").read_text())
    assert result["epochs"] == 2 and result["test_acc"] == float(log[-1]["test_acc"])
    assert 0 < result["params_m"] < 0.1 and result["best_test_acc"] >= result["test_acc"]
    assert result["genotype"] == format_genotype(known_genotype("DARTS_V2"))
