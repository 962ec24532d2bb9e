"""workers.train and `actstudy train`: determinism, divergence, bit-exact resume from a checkpoint, the
L2 parameter groups, the learning-rate schedule, the per-epoch records and the config's validation.

    .venv/bin/python -m pytest tests/workers/test_train.py -q      # ~15 s on one core

Everything trains MNIST-1D (generated once per module into a temporary cache) or scikit-learn's digits
for 1–4 epochs on the CPU. The Tune trainable (`workers.trial.run_trial`) needs a Tune session; the
studies tests run it under real Ray.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from workers.data import Split, load_dataset
from workers.models import activation_sites, build_model
from workers.train import TrainState, TrialConfig, evaluate, lr_at, make_optimizer, train

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


@pytest.fixture(scope="module", autouse=True)
def mnist1d_cache(tmp_path_factory) -> Path:
    """One MNIST-1D cache for the module (and the CLI's subprocesses); never the user's ~/.actstudy."""
    folder = tmp_path_factory.mktemp("mnist1d-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTSTUDY_CACHE_DIR", str(folder))
        mp.setenv("ACTSTUDY_DATA_ROOT", str(tmp_path_factory.mktemp("empty-data-root")))
        yield folder


def cpu(**overrides) -> TrialConfig:
    return TrialConfig(**{"device": "cpu", "epochs": 2, **overrides})


def metrics(history: list[dict]) -> list[dict]:
    """The records without what legitimately differs between runs (timings)."""
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in history]


# --- determinism and divergence ---------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "pwlu"])
def test_same_config_and_seed_give_identical_history(activation):
    params = {"stats_steps": 10} if activation == "pwlu" else {}
    cfg = cpu(activation=activation, activation_params=params)
    a, b = train(cfg), train(cfg)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert [r["val_acc"] for r in a.history] == [r["val_acc"] for r in b.history]
    assert metrics(a.history) == metrics(b.history)


def test_different_seed_gives_different_history():
    a, b = train(cpu(seed=0)), train(cpu(seed=1))
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in b.history]


def test_training_learns():
    result = train(cpu(epochs=4))
    assert result.status == "completed" and result.epochs_run == 4 and result.diverged_at is None
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final["val_acc"] > 0.3  # chance is 0.1


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_huge_learning_rate_diverges_without_raising(model):
    seen = []
    result = train(cpu(model=model, optimizer="sgd", lr=1e6, epochs=5), on_epoch=lambda record, state: seen.append(record))
    assert result.status == "diverged"
    assert result.diverged_at == result.epochs_run == len(result.history) < 5
    assert result.history[-1]["diverged"] is True
    assert not math.isfinite(result.history[-1]["train_loss"])
    assert seen == result.history  # the hook saw the diverged epoch, so a trainable can report it


# --- checkpoint and resume ------------------------------------------------------------------------


RESUME_CASES = {
    "relu": dict(activation="relu"),
    "relu-cosine-warmup-sgd": dict(activation="relu", schedule="cosine", warmup_epochs=1.5, optimizer="sgd", lr=0.05),
    "pwlu-switch-before-checkpoint": dict(activation="pwlu", activation_params={"stats_steps": 10}),
    "pwlu-switch-after-checkpoint": dict(activation="pwlu", activation_params={"stats_steps": 90}),
    # momentum buffers of PWLU's points start after Phase I (torch's fused SGD raised a TypeError at that step)
    "pwlu-sgd-momentum": dict(activation="pwlu", activation_params={"stats_steps": 10}, optimizer="sgd", lr=0.05, nesterov=True),
    "lslu": dict(activation="lslu", l2=1e-4),
    "cnn1d-pwlu": dict(model="cnn1d", activation="pwlu", activation_params={"stats_steps": 10, "segments": 8}),
    "fp16-telu": dict(activation="telu", precision="fp16"),  # the loss scaler's state travels with the checkpoint
    "bf16-pwlu": dict(activation="pwlu", precision="bf16", activation_params={"stats_steps": 10}),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_from_checkpoint_continues_bit_for_bit(case, tmp_path):
    """36 steps per epoch: stats_steps=10 enters PWLU's Phase II in epoch 1, 90 in epoch 3 (after the save)."""
    cfg = cpu(epochs=4, **RESUME_CASES[case])

    def save_at_2(record, state):
        if record["epoch"] == 2:
            state().save(tmp_path)

    full = train(cfg, on_epoch=save_at_2)
    saved = TrainState.load(tmp_path)
    assert saved.epoch == 2 and saved.config == cfg.to_dict() and len(saved.history) == 2
    resumed = train(TrialConfig.model_validate(saved.config), resume=saved)
    assert resumed.status == "completed" and resumed.epochs_run == 4
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert metrics(resumed.history[2:]) == metrics(full.history[2:])
    assert metrics(resumed.history[:2]) == metrics(full.history[:2])
    if cfg.activation == "pwlu":
        phases = [{s["phase"] for s in r["activations"].values()} for r in full.history]
        expected = [{2}, {2}, {2}, {2}] if cfg.activation_params["stats_steps"] < 36 else [{1}, {1}, {2}, {2}]
        assert phases == expected


def test_resume_without_the_generator_state_would_differ(tmp_path):
    """The check above can fail: resuming with a fresh batch order gives different epochs."""
    cfg = cpu(epochs=3)
    full = train(cfg, on_epoch=lambda r, state: state().save(tmp_path) if r["epoch"] == 2 else None)
    saved = TrainState.load(tmp_path)
    saved.generator = torch.Generator().manual_seed(12345).get_state()
    resumed = train(cfg, resume=saved)
    assert resumed.history[2]["train_loss"] != full.history[2]["train_loss"]


def test_checkpoint_state_is_built_only_when_asked():
    calls = []

    def hook(record, state):
        if record["epoch"] == 1:
            calls.append(state())

    train(cpu(epochs=2), on_epoch=hook)
    assert len(calls) == 1 and calls[0].epoch == 1 and len(calls[0].history) == 1


# --- optimizer, L2 groups, learning rate ------------------------------------------------------------


def groups_by_decay(optimizer: torch.optim.Optimizer) -> tuple[set[int], set[int], float]:
    decay, no_decay = optimizer.param_groups
    assert no_decay["weight_decay"] == 0.0
    return {id(p) for p in decay["params"]}, {id(p) for p in no_decay["params"]}, decay["weight_decay"]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize(("model", "shape", "activation"), [("cnn", (1, 28, 28), "lslu"), ("cnn1d", (40,), "pwlu"), ("mlp", (40,), "prelu")])
def test_l2_applies_only_to_conv_and_linear_weights(model, shape, activation, optimizer):
    net = build_model(model, input_shape=shape, num_classes=10, activation=activation)
    decay, no_decay, wd = groups_by_decay(make_optimizer(net, cpu(l2=1e-3, optimizer=optimizer)))
    weights = {id(m.weight) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    assert wd == 1e-3
    assert decay == weights
    assert no_decay == {id(p) for p in net.parameters()} - weights
    sites = activation_sites(net).values() if activation != "prelu" else [m for m in net.modules() if type(m).__name__ == "PReLU"]
    activation_params = {id(p) for m in sites for p in m.parameters()}
    assert activation_params and activation_params <= no_decay  # LSLU's own `weight` included
    biases = {id(m.bias) for m in net.modules() if getattr(m, "bias", None) is not None}
    assert biases <= no_decay
    norms = {id(p) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()}
    assert norms <= no_decay
    if model == "cnn":
        assert norms  # the cnn has BatchNorm layers, so the check above bites


def test_l2_all_puts_every_parameter_in_the_decay_group():
    net = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, activation="pwlu")
    decay, no_decay, wd = groups_by_decay(make_optimizer(net, cpu(l2=5e-4, l2_all=True)))
    assert wd == 5e-4
    assert decay == {id(p) for p in net.parameters()} and no_decay == set()


def test_optimizer_kinds():
    net = build_model("mlp", input_shape=(40,), num_classes=10)
    assert type(make_optimizer(net, cpu(optimizer="adam"))) is torch.optim.Adam
    assert type(make_optimizer(net, cpu(optimizer="adamw"))) is torch.optim.AdamW
    sgd = make_optimizer(net, cpu(optimizer="sgd", momentum=0.8, nesterov=True))
    assert type(sgd) is torch.optim.SGD
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"] is True


def test_lr_at_warmup_then_constant():
    cfg = cpu(lr=0.1, warmup_epochs=2)  # 2 epochs × 10 steps = 20 warm-up steps
    assert lr_at(0, 100, cfg, 10) == pytest.approx(0.1 / 20)
    assert lr_at(9, 100, cfg, 10) == pytest.approx(0.1 * 10 / 20)
    assert lr_at(19, 100, cfg, 10) == pytest.approx(0.1)
    assert [lr_at(s, 100, cfg, 10) for s in (20, 50, 99)] == [0.1, 0.1, 0.1]
    half = cpu(lr=0.1, warmup_epochs=0.5)
    assert lr_at(0, 100, half, 10) == pytest.approx(0.1 / 5)
    assert lr_at(5, 100, half, 10) == 0.1


def test_lr_at_cosine():
    cfg = cpu(lr=0.2, schedule="cosine")
    assert lr_at(0, 100, cfg, 10) == pytest.approx(0.2)
    assert lr_at(50, 100, cfg, 10) == pytest.approx(0.1)
    assert lr_at(25, 100, cfg, 10) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert lr_at(100, 100, cfg, 10) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(s, 100, cfg, 10) for s in range(100)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    warm = cpu(lr=0.2, schedule="cosine", warmup_epochs=2)  # cosine over the 80 steps after warm-up
    assert lr_at(19, 100, warm, 10) == pytest.approx(0.2)
    assert lr_at(20, 100, warm, 10) == pytest.approx(0.2)
    assert lr_at(60, 100, warm, 10) == pytest.approx(0.1)


def test_records_carry_the_last_steps_learning_rate():
    result = train(cpu(lr=0.01, schedule="cosine", epochs=3))
    total = 36 * 3  # 3,600 training samples, batch 100
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * (36 * e - 1) / total)) for e in (1, 2, 3)]
    assert [r["lr"] for r in result.history] == pytest.approx(expected)


# --- records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("activation", "keys"), [("pwlu", {"left_bound", "points", "phase"}), ("lslu", {"theta", "omega"})])
def test_records_carry_activation_snapshots_by_module_path(activation, keys):
    cfg = cpu(activation=activation, activation_params={"stats_steps": 10} if activation == "pwlu" else {})
    result = train(cfg)
    for record in result.history:
        assert set(record["activations"]) == {"net.2", "net.4"}  # the mlp's two sites
        assert all(keys <= set(snap) for snap in record["activations"].values())
    assert json.loads(json.dumps(result.history)) == result.history
    # The snapshots follow training: the curves moved between epoch 1 and 2.
    first, second = (r["activations"]["net.2"] for r in result.history)
    assert first != second


def test_fixed_activation_records_have_no_snapshots():
    result = train(cpu(epochs=1))
    assert result.final["activations"] == {}
    assert set(METRICS) | {"epoch", "epoch_time", "diverged"} <= set(result.final)
    assert "test_acc" not in result.final


def test_evaluate_test_adds_test_metrics():
    result = train(cpu(epochs=1, evaluate_test=True))
    assert 0.0 <= result.final["test_acc"] <= 1.0 and result.final["test_loss"] > 0
    assert json.dumps(result.final)


def test_evaluate_counts_correct_predictions():
    class Always(nn.Module):
        def forward(self, x):
            return torch.tensor([0.0, 0.0, 5.0]).expand(len(x), 3)

    split = Split(torch.zeros(10, 4), torch.tensor([2, 2, 2, 0, 1, 2, 0, 0, 1, 2]))
    loss, acc = evaluate(Always(), split, batch_size=3)
    assert acc == 0.5
    expected = nn.functional.cross_entropy(Always()(split.x), split.y).item()
    assert loss == pytest.approx(expected)


def test_trains_image_models_on_digits():
    data = load_dataset("digits", seed=0)
    result = train(cpu(dataset="digits", model="cnn", epochs=1, batch_size=64, evaluate_test=True), dataset=data)
    assert result.status == "completed" and result.final["test_acc"] > 0.1


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("l2", -1e-4), ("epochs", 0), ("batch_size", 0), ("optimizer", "rmsprop"), ("schedule", "step"),
     ("warmup_epochs", -1.0), ("device", "tpu"), ("threads", 0), ("precision", "fp8"), ("precision", "float16")],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"\b{field}\b") as info:
        TrialConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_config_round_trips_through_a_dict():
    cfg = TrialConfig(hidden=[64, 32], activation="pwlu", activation_params={"segments": 8}, lr=3e-3)
    assert cfg.hidden == (64, 32)
    assert TrialConfig.model_validate(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="lrr"):  # a misspelt option is an error, never silently ignored
        TrialConfig.model_validate({**cfg.to_dict(), "lrr": 1e-3})


def test_label_smoothing_changes_the_training_loss_only():
    plain, smoothed = (train(cpu(epochs=1, label_smoothing=ls)).final for ls in (0.0, 0.2))
    assert smoothed["train_loss"] > plain["train_loss"]  # smoothed targets: the loss has a floor above 0
    assert smoothed["val_loss"] != plain["val_loss"]  # validation is plain cross-entropy of a differently trained model



# --- mixed precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "telu", "pwlu", "lslu"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_deterministically(precision, activation):
    params = {"stats_steps": 10} if activation == "pwlu" else {}
    cfg = cpu(epochs=3, precision=precision, activation=activation, activation_params=params)
    a, b = train(cfg), train(cfg)
    assert metrics(a.history) == metrics(b.history)
    assert a.status == "completed" and a.final["val_acc"] > 0.25  # chance is 0.1
    full = train(cpu(epochs=3, activation=activation, activation_params=params))
    assert a.history[0]["train_loss"] != full.history[0]["train_loss"]  # autocast really changed the arithmetic
    assert abs(a.final["val_acc"] - full.final["val_acc"]) < 0.15  # …and not the outcome


def test_under_autocast_the_model_computes_in_the_low_precision_type():
    from workers.precision import autocast

    model = build_model("mlp", input_shape=(40,), num_classes=10, activation="pwlu", activation_params={"stats_steps": 0})
    seen = {}
    site = next(iter(activation_sites(model).values()))
    site.register_forward_hook(lambda m, args, out: seen.update(input=args[0].dtype, output=out.dtype))
    with autocast("bf16", torch.device("cpu")):
        logits = model(torch.randn(8, 40))
    assert seen == {"input": torch.bfloat16, "output": torch.bfloat16}
    assert logits.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_only_fp16_checkpoints_a_loss_scaler(precision):
    states = []
    result = train(cpu(epochs=1, precision=precision), on_epoch=lambda record, state: states.append(state()))
    assert result.status == "completed"
    scaler = states[0].scaler
    if precision == "fp16":
        assert scaler["scale"] > 0 and math.log2(scaler["scale"]).is_integer() and "growth_interval" in scaler
        assert all(torch.isfinite(v).all() for v in states[0].model.values() if v.is_floating_point())
    else:
        assert scaler == {}

# --- the CLI ---------------------------------------------------------------------------------------


def actstudy(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("actstudy")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=120)


def test_cli_train_prints_json_on_the_last_line():
    done = actstudy("train", "--epochs", "2", "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert 0.0 < summary["test_acc"] <= 1.0 and 0.0 < summary["val_acc"] <= 1.0
    assert summary["config"]["model"] == "mlp" and summary["config"]["evaluate_test"] is True


@pytest.mark.parametrize(("flag", "value"), [("--activation", "not_an_activation"), ("--model", "vgg")])
def test_cli_train_bad_input_is_a_clear_error(flag, value):
    done = actstudy("train", "--epochs", "1", flag, value)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    # The last line is the error (the progress bar, when not --json, may have drawn itself above it).
    last = done.stderr.strip().splitlines()[-1]
    # A value outside a flag's choices is click's usage error naming the flag; the rest name the command.
    assert repr(value) in last and (f"'{flag}'" in last or last.startswith("actstudy train: "))


def test_checkpoint_dir_keeps_the_newest_epoch_written_whole(tmp_path):
    """workers.trial.CheckpointDir: what every attempt of a trial continues from."""
    from workers.trial import CheckpointDir

    store = CheckpointDir(tmp_path / "a0-t0")
    assert store.latest() is None
    train(cpu(epochs=3), on_epoch=lambda r, state: store.save(state()))
    assert sorted(p.name for p in (tmp_path / "a0-t0").iterdir()) == ["epoch-00003"]
    (tmp_path / "a0-t0" / ".tmp-half-written").mkdir()  # a writer killed mid-save leaves only a hidden folder
    latest = store.latest()
    assert latest.epoch == 3 and [r["epoch"] for r in latest.history] == [1, 2, 3]


@pytest.mark.parametrize("ended", ["finished", "diverged"])
def test_resuming_an_attempt_that_had_ended_trains_nothing(ended, tmp_path):
    """A retry after a driver died can find the trial's last checkpoint: it ends as that attempt did."""
    cfg = cpu(epochs=3)
    full = train(cfg, on_epoch=lambda r, state: state().save(tmp_path) if r["epoch"] == 2 else None)
    saved = TrainState.load(tmp_path)
    if ended == "finished":
        saved.epoch = cfg.epochs
    else:
        saved.history[-1]["diverged"] = True
    seen = []
    result = train(cfg, resume=saved, on_epoch=lambda r, state: seen.append(r))
    assert seen == []  # no epoch trained
    assert result.history == saved.history and result.epochs_run == saved.epoch
    assert result.status == ("completed" if ended == "finished" else "diverged")
    assert len(full.history) == 3
