"""Formula activations: the language (what it takes, what it refuses and why), the module (parity with the
built-ins in float64, gradcheck, parameters), and the numerical check (ranges and reasons)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import activations
from activations import Formula, FormulaError, check_formula

f64 = torch.float64


def formula(expr: str, params: dict | None = None, **kw) -> Formula:
    return activations.create("formula", expr=expr, params=params, **kw)


# --- parity with the built-ins, in float64 ------------------------------------------------------------


@pytest.mark.parametrize("expr, reference", [
    ("x * tanh(softplus(x))", F.mish),
    ("x * sigmoid(x)", F.silu),
    ("where(x > 0, x, 0.01 * x)", lambda x: F.leaky_relu(x, 0.01)),
    ("where(x > 0, x, 0)", F.relu),
    ("0.5 * x * (1 + erf(x / sqrt(2)))", F.gelu),
], ids=["mish", "silu", "leaky_relu", "relu-by-where", "gelu"])
def test_a_formula_equals_its_builtin_in_float64_forward_and_gradient(expr, reference):
    x = torch.cat([torch.linspace(-30, 30, 6001, dtype=f64), torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=f64)])
    x.requires_grad_(True)
    mine, theirs = formula(expr).double()(x), reference(x)
    (g_mine,) = torch.autograd.grad(mine.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.allclose(mine, theirs, rtol=0, atol=1e-12)
    assert torch.allclose(g_mine, g_theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("expr, params", [
    ("x * tanh(softplus(x))", None),
    ("x * sigmoid(x)", None),
    ("x * sigmoid(beta * x)", {"beta": {"init": 1.5, "learnable": True, "per_channel": True}}),
    ("where(x > a, x, a * expm1(x - a))", {"a": {"init": 0.3, "learnable": True}}),
])
def test_formulas_pass_gradcheck_in_x_and_their_parameters(expr, params):
    module = formula(expr, params, num_features=3).double()
    x = torch.randn(4, 3, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))
    for name, p in module.named_parameters():
        def y_of(q, name=name):
            return torch.func.functional_call(module, {name: q}, (x,))

        assert torch.autograd.gradcheck(y_of, (p.detach().clone().requires_grad_(True),))


def test_formula_mish_has_no_nan_gradient_at_extreme_inputs():
    x = torch.tensor([-3e38, -1e4, -100.0, 100.0, 1e4, 3e38], requires_grad=True)
    y = formula("x * tanh(softplus(x))")(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()


# --- the language: what it refuses, naming the token ---------------------------------------------------

HOSTILE = {
    "import": ("__import__('os')", "unknown function '__import__'"),
    "dunder attribute": ("x.__class__", "attribute access not allowed: 'x.__class__'"),
    "lambda": ("(lambda: 0)()", "only the listed functions may be called"),
    "bare lambda": ("lambda: x", "lambda not allowed"),
    "string": ('"x"', "str constant 'x' is not allowed"),
    "tower of powers": ("9**9**9", "the exponent of ** must be a number in [-8, 8], not '9 ** 9'"),
    "nesting": ("(" * 300 + "x" + ")" * 300, "nested too deeply: 300 levels"),
    "20,000 terms": (" + ".join(["x"] * 20_000), "too long: 79997 characters"),
    "unknown function": ("foo(x)", "unknown function 'foo'"),
    "undeclared name": ("x * beta", "undeclared name 'beta'"),
    "empty": ("", "empty formula"),
    "blank": ("   ", "empty formula"),
    "subscript": ("x[0]", "subscripts not allowed"),
    "comprehension": ("[x for x in (1,)]", "comprehensions not allowed"),
    "keyword argument": ("exp(x=1)", "positional arguments only"),
    "floor division": ("x // 2", "the operator '//' is not allowed"),
    "boolean": ("x * True", "bool constant True is not allowed"),
    "complex": ("x * 1j", "complex constant 1j is not allowed"),
    "huge number": ("x * 1e300", "out of range"),
    "statement": ("import os", "not an expression"),
    "two statements": ("x; x", "not an expression"),
    "a function uncalled": ("x * exp", "'exp' is a function"),
    "chained comparison": ("where(0 < x < 1, x, 0)", "one comparison"),
    "bare comparison": ("x > 0", "only as where's first argument"),
    "no x": ("exp(1.0)", "does not use x"),
    "deep operators": ("-" * 40 + "x", "nested too deeply"),
    "nul byte": ("x\x00", "null bytes"),
    "walrus": ("(y := x)", "':=' not allowed"),
    "if expression": ("x if x > 0 else 0", "write where(c, a, b)"),
    "too many nodes": ("+".join(f"x*{i}" for i in range(60)), "syntax nodes, the limit is 200"),
    "wrong arity": ("max(x)", "'max' takes 2 arguments, got 1"),
}


@pytest.mark.parametrize("expr, says", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_and_careless_formulas_are_refused_naming_the_token(expr, says):
    with pytest.raises(FormulaError) as info:
        formula(expr)
    assert str(info.value).startswith("expr: ") and says in str(info.value), str(info.value)


def test_a_formula_is_read_not_executed(monkeypatch):
    """The text is only parsed to a syntax tree (compile with PyCF_ONLY_AST, as ast.parse does); torch calls
    are built from an allow-list; Python's eval and exec are never reached."""
    import ast
    import builtins

    real_compile, compiled = builtins.compile, []

    def refuse(*_a, **_k):
        raise AssertionError("user text reached eval/exec")

    def parse_only(source, filename, mode, flags=0, *args, **kwargs):
        compiled.append(flags)
        assert flags & ast.PyCF_ONLY_AST, "user text compiled to code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(builtins, "compile", parse_only)
    assert formula("x * sigmoid(x)")(torch.tensor([1.0])).item() == pytest.approx(0.7310586)
    assert compiled  # it was parsed, as a tree only


@pytest.mark.parametrize("params, says", [
    ({"beta": "1.0"}, "params.beta: expected a number or"),
    ({"beta": {"init": 1.0, "learnable": "yes"}}, "params.beta.learnable: expected true or false"),
    ({"beta": {"init": 1.0, "shape": 3}}, "params.beta: unknown key shape"),
    ({"beta": {"init": float("nan")}}, "params.beta.init: expected a finite number"),
    ({"beta": {"init": 5.0, "low": 0.0, "high": 2.0}}, "params.beta.init: 5 is outside [low, high]"),
    ({"beta": 1.0, "gamma": 2.0}, "params: gamma declared but not used"),
    ({"x": 1.0, "beta": 1.0}, "params.x: 'x' is taken"),
    ({"exp": 1.0, "beta": 1.0}, "params.exp: 'exp' is taken"),
    ({"not a name": 1.0}, "is not a parameter name"),
    ({f"p{i}": 1.0 for i in range(9)}, "params: 9 parameters, the limit is 8"),
    ({"beta": {"init": 1.0, "learnable": True, "per_channel": True}}, "per channel needs the input's channel count"),
])
def test_bad_parameters_are_refused_naming_the_parameter(params, says):
    with pytest.raises(FormulaError, match=None) as info:
        formula("x * sigmoid(beta * x)", params)
    assert says in str(info.value), str(info.value)


# --- parameters: constants, learnable, per channel, bounds ----------------------------------------------


def test_a_constant_parameter_is_not_trained_and_a_learnable_one_is():
    fixed = formula("x * tanh(a * exp(min(x, 20)))", {"a": 2.0})
    assert list(fixed.parameters()) == [] and not fixed.evolves and not activations.reports_evolution(fixed)
    learn = formula("x * sigmoid(beta * x)", {"beta": {"init": 1.0, "learnable": True}})
    assert [n for n, _ in learn.named_parameters()] == ["learned.beta"] and activations.reports_evolution(learn)
    learn(torch.randn(8)).sum().backward()
    assert learn.learned["beta"].grad is not None and learn.learned["beta"].grad.abs() > 0


@pytest.mark.parametrize("shape", [(5, 3), (5, 3, 7), (2, 3, 4, 4)], ids=["NC", "NCL", "NCHW"])
def test_per_channel_parameters_act_on_dim_1(shape):
    module = formula("x * sigmoid(beta * x)", {"beta": {"init": 1.0, "learnable": True, "per_channel": True}}, num_features=3)
    with torch.no_grad():
        module.learned["beta"].copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.randn(shape, dtype=torch.float32)
    beta = torch.tensor([0.5, 1.0, 2.0]).view(1, 3, *([1] * (len(shape) - 2)))
    assert torch.allclose(module(x), x * torch.sigmoid(beta * x))
    with pytest.raises(ValueError, match="per channel"):
        module(torch.randn(5, 4))


def test_bounds_clamp_the_value_the_formula_sees_and_the_snapshot_reports():
    module = formula("x * sigmoid(beta * x)", {"beta": {"init": 1.0, "learnable": True, "low": 0.5, "high": 2.0}})
    with torch.no_grad():
        module.learned["beta"].fill_(9.0)
    x = torch.linspace(-3, 3, 7)
    assert torch.allclose(module(x), x * torch.sigmoid(2.0 * x))
    assert module.state_snapshot() == {"formula": "x * sigmoid(beta * x)", "params": {"beta": 2.0}, "constants": {}}


def test_a_snapshot_draws_the_curve_again():
    module = formula("a * x * sigmoid(beta * x)", {"a": 1.5, "beta": {"init": 1.0, "learnable": True, "per_channel": True}}, num_features=2)
    with torch.no_grad():
        module.learned["beta"].copy_(torch.tensor([1.0, 3.0]))
    x = torch.linspace(-2, 2, 9, dtype=f64)
    assert torch.allclose(activations.curve_at(module.state_snapshot(), x), 1.5 * x * torch.sigmoid(2.0 * x))


def test_bfloat16_and_autocast_run():
    module = formula("x * tanh(softplus(x))")
    x = torch.randn(4, 8)
    assert module(x.bfloat16()).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(module(x)).all()


def test_labels_are_the_canonical_expression_or_the_users():
    assert formula("x*tanh( softplus(x) )").label == "x * tanh(softplus(x))"
    assert formula("x * sigmoid(x)", label="my silu").label == "my silu"
    long = formula(" + ".join(f"{i} * sigmoid({i} * x)" for i in range(1, 12)))
    assert len(long.label) <= activations.MAX_LABEL and "…" in long.label
    with pytest.raises(FormulaError, match="label: expected 1 to 64"):
        formula("x", label="x" * 65)


# --- the numerical check ----------------------------------------------------------------------------


def test_the_naive_telu_is_refused_naming_the_range_and_the_overflow():
    report = check_formula(formula("x * tanh(exp(x))"))
    assert not report.ok
    f32 = next(f for f in report.findings if f.dtype == "float32")
    assert (f32.quantity, f32.kind, f32.where, f32.reason) == ("the gradient", "NaN", "x ≥ 88.72", "exp(x) overflows to inf")
    assert {f.dtype for f in report.findings} == {"float32", "bfloat16"}
    assert "the built-in 'telu'" in report.message()


@pytest.mark.parametrize("expr", ["x * tanh(softplus(x))", "x * sigmoid(x)", "where(x > 0, x, expm1(min(x, 0)))", "x * tanh(exp(min(x, 20)))",
                                  "x * erf(x)", "log1p(exp(-abs(x))) + relu(x)"])
def test_well_behaved_formulas_pass(expr):
    assert check_formula(formula(expr)).ok


@pytest.mark.parametrize("expr, finding", [
    ("log(x)", ("the output", "x ≤ 0", "log(x) is -inf (the log of 0)")),
    ("sqrt(x)", ("the output", "x ≤ -1.401e-45", "sqrt(x) is NaN")),
    ("x * x", ("the output", "x ≥ 1.845e+19", "x * x overflows to inf")),
    ("where(x > 0, x, expm1(x))", ("the gradient", "x ≥ 88.72", "expm1(x) overflows to inf")),  # where's NaN-gradient trap
    ("x / (x - 1)", ("the output", "x = 1", "x / (x - 1) divides by zero")),
    ("sqrt(1 - x * x) + x", ("the output", "x ≤ -1", "sqrt(1 - x * x) is NaN")),  # the reason read at the boundary
    ("x * sigmoid(x) + 1 / (x - 0.025)", ("the output", "x = 0.025", "1 / (x - 0.025) divides by zero")),  # a pole between grid points
    ("x / (1 + exp(-x))", ("the gradient", "x ≤ -88.72", "exp(-x) overflows to inf")),  # SiLU written the naive way
])
def test_findings_name_the_quantity_the_range_and_the_reason(expr, finding):
    found = [(f.quantity, f.where, f.reason) for f in check_formula(formula(expr)).findings if f.dtype == "float32"]
    assert finding in found, found


def test_a_learnable_parameters_gradient_is_checked_too():
    report = check_formula(formula("x * sigmoid(x) + sqrt(abs(c))", {"c": {"init": 0.0, "learnable": True}}))
    assert [(f.quantity, f.where) for f in report.findings if f.dtype == "float32"] == [("the gradient in c", "every x")]


def test_a_formula_pickles_and_copies_with_its_parameters():
    import copy
    import io

    module = formula("x * sigmoid(beta * x)", {"beta": {"init": 1.5, "learnable": True, "per_channel": True}}, num_features=3)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3)
    for other in (loaded, copy.deepcopy(module)):
        assert torch.equal(other(x), module(x)) and other.label == module.label
        assert other.learned["beta"] is not module.learned["beta"]


# --- found in review: bounded work, edge formulas that once answered 500 ------------------------------


def test_the_check_is_bounded_for_a_formula_bad_in_thousands_of_places():
    from activations._numerics import MAX_STRETCHES

    params = {p: {"init": 1.0, "learnable": True} for p in "abcdefgh"}
    module = formula("sqrt(cos(62.83185307 * x)) * a * b * c * d * e * f * g * h", params)
    report = check_formula(module)
    assert not report.ok
    quantities = 2 + len(params)  # the output, dy/dx and one gradient per learnable parameter
    assert len(report.findings) <= 2 * quantities * (MAX_STRETCHES + 1)
    assert any("more stretches of x" in f.where for f in report.findings) and len(report.message()) < 2000


def test_a_step_function_has_zero_gradients_not_an_error():
    report = check_formula(formula("where(x < 0, 0, 1)"))
    assert report.ok and report.findings == ()


def test_growing_faster_than_x_is_a_note_beyond_1e4_not_a_refusal():
    report = check_formula(formula("1.0507 * where(x > 0, x, 1.67326 * expm1(min(x, 0)))"))  # SELU, written out
    assert report.ok and report.findings and {f.severity for f in report.findings} == {"note"}
    assert not check_formula(formula("exp(x)")).ok  # inf from x ≈ 88.7: within 10⁴, refused


@pytest.mark.parametrize("expr, params, says", [
    ("x * 1" + "0" * 400, None, "out of range"),
    ("x ** 1" + "0" * 400, None, "the exponent of ** must be a number in [-8, 8]"),
    ("x * forward", {"forward": {"init": 1.0, "learnable": True}}, "'forward' is reserved"),
    ("x * c", {"c": 10**400}, "expected a finite number"),
    ("x * c", {"c": {"init": 1.0, 3: 1}}, "unknown key 3"),
])
def test_numbers_beyond_float_and_reserved_names_are_refused_not_crashed(expr, params, says):
    with pytest.raises(FormulaError) as info:
        formula(expr, params)
    assert says in str(info.value)


def test_a_snapshot_with_values_training_pushed_anywhere_still_draws():
    snap = {"formula": "x * sigmoid(beta * x)", "params": {"beta": [float("nan"), 3e7]}, "constants": {}}
    assert activations.curve_at(snap, torch.linspace(-1, 1, 5, dtype=f64)).shape == (5,)
