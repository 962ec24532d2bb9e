"""StudySpec validation: field-level messages, limits, YAML/JSON loading, the examples."""

import json
from pathlib import Path

import pytest

import activations
from studies.spec import MAX_ACTIVATIONS, MAX_TRIALS, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors}


def test_defaults_and_labels():
    spec = parse_spec({"activations": ["ReLU", "telu", {"name": "pwlu", "segments": 8}]})
    assert spec.labels == ["relu", "telu", "pwlu(segments=8)"]
    assert spec.confirm.baseline == "relu"
    assert spec.activation("pwlu(segments=8)").params == {"segments": 8}
    assert spec.total_trials() == 3 * spec.search.trials_per_activation


def test_baseline_defaults_to_first_without_relu():
    assert parse_spec({"activations": ["gelu", "telu"]}).confirm.baseline == "gelu"


def test_unknown_activation_is_named_with_the_valid_ones():
    errs = errors_of({"activations": ["relu", "swishy"]})
    assert "activations.1" in errs
    assert "swishy" in errs["activations.1"] and "telu" in errs["activations.1"]


def test_bad_activation_parameter_and_value():
    assert "bogus" in errors_of({"activations": [{"name": "pwlu", "bogus": 1}]})["activations.0"]
    assert "segments" in errors_of({"activations": [{"name": "pwlu", "segments": 1}]})["activations.0"]


@pytest.mark.parametrize(
    "search, field, words",
    [
        ({"lr": {"low": 0.1, "high": 0.01}}, "search.lr", "low must be < high"),
        ({"l2": {"low": 0.0, "high": 0.01, "log": True}}, "search.l2", "log-scale"),
        ({"trials_per_activation": 0}, "search.trials_per_activation", "greater than or equal to 1"),
        ({"trials_per_activation": MAX_TRIALS + 1}, "search.trials_per_activation", "less than or equal"),
        ({"sampler": "annealing"}, "search.sampler", "tpe"),
        ({"pruner": "hyperband"}, "search.pruner", "asha"),
    ],
)
def test_search_fields(search, field, words):
    errs = errors_of({"activations": ["relu"], "search": search})
    assert field in errs and words in errs[field]


def test_other_fields():
    assert "dataset.name" in errors_of({"activations": ["relu"], "dataset": {"name": "imagenet"}})
    assert "model.name" in errors_of({"activations": ["relu"], "model": {"name": "vit"}})
    assert "training.epochs" in errors_of({"activations": ["relu"], "training": {"epochs": 0}})
    assert "confirm.seeds" in errors_of({"activations": ["relu"], "confirm": {"seeds": 0}})
    assert "surprise" in errors_of({"activations": ["relu"], "surprise": 1})
    assert "activations" in errors_of({"activations": []})
    assert "activations" in errors_of({"activations": ["relu"] * (MAX_ACTIVATIONS + 1)})
    assert "name" in errors_of({"name": "has spaces", "activations": ["relu"]})


def test_cross_field_rules():
    msg = " ".join(errors_of({"activations": ["relu", "relu"]}).values())
    assert "duplicated: relu" in msg
    msg = " ".join(errors_of({"activations": ["gelu"], "confirm": {"baseline": "relu"}}).values())
    assert "confirm.baseline" in msg
    msg = " ".join(errors_of({"activations": ["relu"], "model": {"name": "resnet18"}}).values())
    assert "image dataset" in msg
    msg = " ".join(errors_of({"activations": ["relu"], "training": {"augment": True}}).values())
    assert "augment" in msg and "mnist1d" in msg  # refused at submission, not in every trial
    msg = " ".join(errors_of({"activations": ["relu"], "dataset": {"name": "digits"}, "model": {"name": "cnn1d"}}).values())
    assert "cnn1d" in msg and "digits" in msg
    msg = " ".join(errors_of({"activations": ["relu"] * 1 + ["gelu"], "search": {"trials_per_activation": 200},
                              "training": {"epochs": 500}}).values())
    assert "study too large" in msg


def test_examples_load():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.activations, path


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- relu\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "s.json").write_text('{"activations": ["relu"], "seed": 3}')
    assert load_spec(tmp_path / "s.json").seed == 3


def test_a_baseline_with_parameters_matches_its_label():
    """Parameter text keeps its case in a label (`channelwise=True`): the baseline still finds it."""
    spec = parse_spec({"activations": ["relu", {"name": "pwlu", "channelwise": True}],
                       "confirm": {"baseline": "pwlu(channelwise=True)"}})
    assert spec.confirm.baseline == "pwlu(channelwise=True)" in spec.labels
    assert parse_spec({"activations": ["gelu", "relu"], "confirm": {"baseline": "ReLU"}}).confirm.baseline == "relu"


@pytest.mark.parametrize("where", [{"search": {"lr": {"low": 1e-4, "high": float("inf")}}},
                                   {"training": {"momentum": float("nan")}},
                                   {"dataset": {"val_fraction": float("nan")}}])
def test_non_finite_numbers_are_refused(where):
    """A stored spec must re-read as it was: JSON columns hold no Infinity or NaN."""
    section, fields = next(iter(where.items()))
    errors = errors_of({"activations": ["relu"], **where})
    assert any(key.startswith(section) for key in errors), errors


def test_activation_parameters_are_strictly_typed():
    from studies.spec import check_parameters

    check_parameters("pwlu", {"segments": 8, "bound_k": 2, "channelwise": True})
    for name in ("relu", "pwlu", "lslu", "gelu", "elu"):
        check_parameters(name, {})  # the defaults pass
    for params in ({"segments": "8"}, {"segments": 8.0}, {"bound_k": True}, {"bound_k": float("inf")}, {"channelwise": "yes"},
                   {"segments": 2**30}, {"stats_steps": -1}, {"init_bound": 1e308}):  # bounded: 2³⁰ segments ate 24 GB
        with pytest.raises(ValueError, match=next(iter(params))):
            check_parameters("pwlu", params)


def test_the_schema_documents_each_activations_parameters():
    from studies.spec import ActivationSpec, StudySpec

    variants = StudySpec.model_json_schema()["$defs"]["ActivationSpec"]["oneOf"]
    by_name = {v["title"]: v for v in variants if v["type"] == "object"}
    assert set(by_name) == set(activations.names()) | {"formula"}
    assert by_name["formula"]["required"] == ["name", "expr"] and by_name["formula"]["properties"]["expr"]["maxLength"] == 500
    assert by_name["pwlu"]["properties"]["segments"]["type"] == "integer"
    assert by_name["gelu"]["properties"]["approximate"]["enum"] == ["none", "tanh"]
    assert ActivationSpec.model_validate({"name": "pwlu", "segments": 8}).params == {"segments": 8}


# --- formula activations ------------------------------------------------------------------------------

MISH = {"name": "formula", "expr": "x * tanh(softplus(x))"}
BETA = {"name": "formula", "expr": "x * sigmoid(beta * x)", "params": {"beta": {"init": 1.0, "learnable": True, "per_channel": True}}}


def test_formulas_sit_beside_the_builtins_with_their_expression_as_label():
    spec = parse_spec({"activations": ["relu", "telu", MISH, BETA, {**MISH, "expr": "x*sigmoid(x)", "label": "swish"}]})
    assert spec.labels == ["relu", "telu", "x * tanh(softplus(x))", "x * sigmoid(beta * x)", "swish"]
    config = spec.trial_config().model_copy(update={"activation": "formula", "activation_params": spec.activation("swish").params})
    assert config.params()["act.expr"] == "x*sigmoid(x)"
    assert parse_spec(spec.model_dump(mode="json")).labels == spec.labels  # a stored spec reads back the same


def test_the_same_formula_twice_is_refused_asking_for_a_label():
    errs = errors_of({"activations": [MISH, {**MISH, "expr": "x*tanh(softplus( x ))"}]})
    assert "duplicated: x * tanh(softplus(x))" in errs[""]


@pytest.mark.parametrize("entry, says", [
    ({"name": "formula", "expr": "x * tanh(exp(x))"}, "the gradient is NaN for x ≥ 88.72 in float32"),
    ({"name": "formula", "expr": "__import__('os').system('true')"}, "expr: only the listed functions may be called"),
    ({"name": "formula", "expr": "x * y"}, "expr: undeclared name 'y'"),
    ({"name": "formula"}, "expr: a formula needs an expression"),
    ({"name": "formula", "expr": 3}, "expr"),
    ({"name": "formula", "expr": "x", "params": {"a": 1.0}}, "params: a declared but not used"),
    ({"name": "formula", "expr": "x", "shape": 2}, "takes no parameter shape"),
])
def test_bad_formulas_are_refused_naming_the_key(entry, says):
    assert says in errors_of({"activations": ["relu", entry]})["activations.1"]


def test_the_cli_checks_a_formula_and_draws_it(tmp_path, capsys):
    from studies.cli import main

    assert main(["activations", "--check", "x * tanh(softplus(x))", "--plot", str(tmp_path / "ok.png")]) == 0
    assert "passes" in capsys.readouterr().out and (tmp_path / "ok.png").stat().st_size > 10_000
    assert main(["activations", "--check", "x * tanh(exp(x))", "--json"]) == 1
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not answer["ok"] and answer["findings"][0]["where"] == "x ≥ 88.72" and len(answer["curve"]["x"]) == 241
    assert main(["activations", "--check", "x * sigmoid(beta * x)", "--params", "{beta: {init: 1.0, learnable: true}}"]) == 0
    assert "learnable: beta" in capsys.readouterr().out
    assert main(["activations", "--check", "x.__class__"]) == 2
    assert "expr: attribute access not allowed" in capsys.readouterr().err
    assert main(["activations"]) == 0
    listing = capsys.readouterr().out
    assert "formula" in listing and "where(a < b, c, d)" in listing


def test_a_formula_labelled_like_a_builtin_does_not_take_over_the_baseline():
    spec = parse_spec({"activations": [{**MISH, "label": "ReLU"}, "relu"]})
    assert spec.confirm.baseline == "relu"
    assert parse_spec({"activations": ["gelu", "relu"], "confirm": {"baseline": "RELU"}}).confirm.baseline == "relu"


def test_formula_labels_that_read_alike_in_mlflow_get_keys_of_their_own():
    from studies.mlflow.layout import label_keys

    keys = label_keys(["relu", "pwlu(segments=8)", "x * sigmoid(x)", "x + sigmoid(x)"])
    assert keys["relu"] == "relu" and keys["pwlu(segments=8)"] == "pwlu_segments_8_"
    assert keys["x * sigmoid(x)"] != keys["x + sigmoid(x)"] and keys["x * sigmoid(x)"].startswith("x _ sigmoid_x_-")
    assert len(set(keys.values())) == 4


def test_one_training_may_try_a_formula_a_study_refuses_with_a_warning(capsys):
    from studies.cli import main

    code = main(["train", "--activation", "formula", "--activation-params", '{"expr": "x * tanh(exp(x))"}', "--epochs", "1",
                 "--device", "cpu", "--json"])
    out = capsys.readouterr()
    assert code == 0 and json.loads(out.out.strip().splitlines()[-1])["status"] == "completed"
    assert "a study would refuse this formula" in out.err and "x ≥ 88.72" in out.err
