"""The formula language: an activation written as an expression in `x`, read from Python's syntax tree over an
allow-list and interpreted with torch — never compiled or executed as Python.

Allowed: the variable `x`, declared parameter names, numbers, `+ - * /`, `**` with a number exponent in
[-MAX_POWER, MAX_POWER], unary `-` and `+`, the one-argument FUNCTIONS, `min(a, b)`, `max(a, b)` and
`where(a < b, c, d)` (one comparison: `<`, `<=`, `>`, `>=`). Everything else is refused, naming the token.
Limits, checked before the parser runs where it could recurse or allocate: MAX_CHARS characters,
MAX_DEPTH nested parentheses or operators, MAX_NODES syntax nodes.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_CHARS = 500
MAX_NODES = 200
MAX_DEPTH = 32
MAX_POWER = 8
MAX_CONSTANT = 1e6  # |a number| in a formula; larger ones overflow float16/bfloat16 products anyway

# name -> (torch function, the formula in words for the listing)
FUNCTIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "exp": (torch.exp, "eˣ"),
    "log": (torch.log, "natural logarithm"),
    "log1p": (torch.log1p, "ln(1 + x), accurate near 0"),
    "expm1": (torch.expm1, "eˣ − 1, accurate near 0"),
    "sqrt": (torch.sqrt, "square root"),
    "abs": (torch.abs, "|x|"),
    "tanh": (torch.tanh, "hyperbolic tangent"),
    "sigmoid": (torch.sigmoid, "1 / (1 + e^(−x))"),
    "softplus": (F.softplus, "ln(1 + eˣ), linear above x = 20 (no overflow)"),
    "erf": (torch.erf, "error function"),
    "sin": (torch.sin, "sine"),
    "cos": (torch.cos, "cosine"),
    "relu": (torch.relu, "max(0, x)"),
}
BINARY_FUNCTIONS = {"min": torch.minimum, "max": torch.maximum}
COMPARISONS = {ast.Lt: ("<", torch.lt), ast.LtE: ("<=", torch.le), ast.Gt: (">", torch.gt), ast.GtE: (">=", torch.ge)}
_ARITHMETIC = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.Div: torch.div}
_REFUSED = {  # what a user most likely tried, in their words
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambda", ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.IfExp: "'a if c else b' (write where(c, a, b))", ast.BoolOp: "'and'/'or'", ast.Starred: "'*' unpacking",
    ast.NamedExpr: "':='", ast.Await: "await", ast.JoinedStr: "f-strings", ast.List: "lists", ast.Tuple: "tuples",
    ast.Dict: "dicts", ast.Set: "sets", ast.Yield: "yield", ast.YieldFrom: "yield",
}

def functions_listed() -> list[str]:
    """Every function the language has, as a user writes it."""
    return [f"{name}(a)" for name in FUNCTIONS] + [f"{name}(a, b)" for name in BINARY_FUNCTIONS] + ["where(a < b, c, d)"]


Value = torch.Tensor | float
Env = dict[str, Value]


class FormulaError(ValueError):
    """A formula that is not in the language, or beyond its limits; the message names the token."""


@dataclass(frozen=True)
class Node:
    """One node of a checked formula: `text` is its source form (for messages), `kids` its operands."""

    text: str
    kids: tuple[Node, ...]
    apply: Callable[..., Value]  # the kids' values -> this node's value
    leaf: Callable[[Env], Value] | None = None  # for x, parameters and numbers
    number: float | None = None  # a number's value
    op: str = ""  # the operator or function: "/", "log", ... (for the check's reasons)

    def evaluate(self, env: Env, trace: list[tuple[Node, Value]] | None = None) -> Value:
        """The formula's value for `env` ({'x': tensor, parameter: value}); `trace` collects every node's value."""
        value = self.leaf(env) if self.leaf else self.apply(*(k.evaluate(env, trace) for k in self.kids))
        if trace is not None:
            trace.append((self, value))
        return value


@dataclass(frozen=True)
class Parsed:
    root: Node
    text: str  # canonical form (ast.unparse): spacing and redundant parentheses normalised
    names: frozenset[str]  # the parameter names it uses


def parse(expr: object, params: frozenset[str] = frozenset()) -> Parsed:
    """Check `expr` against the language and build its evaluator; FormulaError naming the first problem."""
    if not isinstance(expr, str):
        raise FormulaError(f"expected a string, got {type(expr).__name__}")
    if not expr.strip():
        raise FormulaError("empty formula: write an expression in x, e.g. 'x * sigmoid(x)'")
    _check_nesting(expr)
    if len(expr) > MAX_CHARS:
        raise FormulaError(f"too long: {len(expr)} characters, the limit is {MAX_CHARS}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not an expression: {exc.msg} at column {exc.offset or 0}") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # ValueError: a NUL byte
        raise FormulaError(f"the parser refused it ({type(exc).__name__}): nested too deeply or not text") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise FormulaError(f"too large: {nodes} syntax nodes, the limit is {MAX_NODES}")
    used: set[str] = set()
    root = _build(tree.body, params, used, depth=0)
    if "x" not in _leaves(root):
        raise FormulaError("the formula does not use x")
    return Parsed(root, ast.unparse(tree.body), frozenset(used))


def _check_nesting(expr: str) -> None:
    depth = deepest = 0
    for ch in expr:
        depth += ch in "([{"
        depth -= ch in ")]}"
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise FormulaError(f"nested too deeply: {deepest} levels of parentheses, the limit is {MAX_DEPTH}")


def constants(node: Node) -> set[float]:
    """The numbers written in a formula (the check evaluates near them: a pole at x = c falls between grid points)."""
    if node.number is not None:
        return {node.number}
    return set().union(*(constants(k) for k in node.kids))


def _leaves(node: Node) -> set[str]:
    return {node.text} if node.leaf else set().union(*(_leaves(k) for k in node.kids))


def _build(n: ast.AST, params: frozenset[str], used: set[str], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FormulaError(f"nested too deeply: more than {MAX_DEPTH} levels of operators")
    text = ast.unparse(n)

    def kid(sub: ast.AST) -> Node:
        return _build(sub, params, used, depth + 1)

    if isinstance(n, ast.Name):
        if n.id == "x":
            return Node("x", (), _none, leaf=lambda env: env["x"])
        if n.id in params:
            used.add(n.id)
            name = n.id
            return Node(name, (), _none, leaf=lambda env: env[name])
        if n.id in FUNCTIONS or n.id in BINARY_FUNCTIONS or n.id == "where":
            raise FormulaError(f"'{n.id}' is a function: call it, e.g. {n.id}(x)")
        declared = ", ".join(sorted(params)) or "none declared"
        raise FormulaError(f"undeclared name '{n.id}': the variable is x; parameters: {declared}")
    if isinstance(n, ast.Constant):
        value = n.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FormulaError(f"{type(value).__name__} constant {text[:40]} is not allowed: only numbers")
        if abs(value) > MAX_CONSTANT or not math.isfinite(value):  # an int beyond float range: compared, never converted
            raise FormulaError(f"the number {text[:40]} is out of range: |c| ≤ {MAX_CONSTANT:g}")
        number = float(value)
        return Node(text, (), _none, leaf=lambda env: number, number=number)
    if isinstance(n, ast.UnaryOp):
        if isinstance(n.op, ast.USub):
            return Node(text, (kid(n.operand),), lambda a: -a)
        if isinstance(n.op, ast.UAdd):
            return kid(n.operand)
        raise FormulaError(f"the operator '{_op(n.op)}' is not allowed: use + - * / **")
    if isinstance(n, ast.BinOp):
        if isinstance(n.op, ast.Pow):
            exponent = _number(n.right)
            if exponent is None or not -MAX_POWER <= exponent <= MAX_POWER:
                raise FormulaError(f"in '{text}': the exponent of ** must be a number in [-{MAX_POWER}, {MAX_POWER}], "
                                   f"not '{ast.unparse(n.right)}' (for e^y write exp(y))")
            return Node(text, (kid(n.left),), lambda a: _pow(a, exponent))
        fn = _ARITHMETIC.get(type(n.op))
        if fn is None:
            raise FormulaError(f"the operator '{_op(n.op)}' is not allowed: use + - * / **")
        op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(n.op)]
        return Node(text, (kid(n.left), kid(n.right)), lambda a, b: _binary(fn, a, b), op=op)
    if isinstance(n, ast.Call):
        return _call(n, text, kid)
    if isinstance(n, ast.Compare):
        raise FormulaError(f"a comparison ('{text}') is allowed only as where's first argument: where({text}, a, b)")
    what = _REFUSED.get(type(n), type(n).__name__)
    raise FormulaError(f"{what} not allowed: '{text}'")


def _call(n: ast.Call, text: str, kid: Callable[[ast.AST], Node]) -> Node:
    if not isinstance(n.func, ast.Name):
        raise FormulaError(f"only the listed functions may be called, not '{ast.unparse(n.func)}'")
    name = n.func.id
    if n.keywords or any(isinstance(a, ast.Starred) for a in n.args):
        raise FormulaError(f"'{name}' takes positional arguments only")
    if name in FUNCTIONS:
        _arity(name, n, 1)
        fn = FUNCTIONS[name][0]
        return Node(text, (kid(n.args[0]),), lambda a: fn(a) if isinstance(a, torch.Tensor) else float(fn(_tensor(a))), op=name)
    if name in BINARY_FUNCTIONS:
        _arity(name, n, 2)
        pair = BINARY_FUNCTIONS[name]
        return Node(text, (kid(n.args[0]), kid(n.args[1])), lambda a, b: _binary(pair, a, b))
    if name == "where":
        _arity(name, n, 3)
        cond = n.args[0]
        if not (isinstance(cond, ast.Compare) and len(cond.ops) == 1 and type(cond.ops[0]) in COMPARISONS):
            raise FormulaError(f"where's first argument must be one comparison (a < b, <=, >, >=), not '{ast.unparse(cond)}'")
        compare = COMPARISONS[type(cond.ops[0])][1]
        kids = (kid(cond.left), kid(cond.comparators[0]), kid(n.args[1]), kid(n.args[2]))
        return Node(text, kids, lambda a, b, c, d: _where(compare, a, b, c, d))
    allowed = ", ".join([*FUNCTIONS, *BINARY_FUNCTIONS, "where"])
    raise FormulaError(f"unknown function '{name}'; allowed: {allowed}")


def _arity(name: str, n: ast.Call, k: int) -> None:
    if len(n.args) != k:
        raise FormulaError(f"'{name}' takes {k} argument{'s' if k > 1 else ''}, got {len(n.args)}")


def _number(n: ast.AST) -> float | None:
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub | ast.UAdd):
        inner = _number(n.operand)
        return None if inner is None else (-inner if isinstance(n.op, ast.USub) else inner)
    if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool):
        return float(n.value) if abs(n.value) <= MAX_CONSTANT else math.inf  # out of any exponent range, never converted
    return None


def _op(op: ast.AST) -> str:
    return {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
            ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.Not: "not"}.get(type(op), type(op).__name__)


def _none(*_: Value) -> Value:
    raise AssertionError("a leaf has no operands")


def _tensor(a: Value, like: torch.Tensor | None = None) -> torch.Tensor:
    """A number as a 0-d tensor: float64 alone (a function of constants, e.g. sqrt(2), stays exact), else of `like`'s dtype."""
    if isinstance(a, torch.Tensor):
        return a
    return torch.tensor(a, dtype=torch.float64) if like is None else torch.full((), a, dtype=like.dtype, device=like.device)


def _binary(fn: Callable, a: Value, b: Value) -> Value:
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        return float(fn(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))
    if fn in (torch.minimum, torch.maximum):  # no Python-number overloads: a 0-d tensor of the other's dtype
        a, b = (_tensor(a, b) if isinstance(b, torch.Tensor) else a), (_tensor(b, a) if isinstance(a, torch.Tensor) else b)
    return fn(a, b)


def _pow(a: Value, exponent: float) -> Value:
    if exponent == 2:
        return a * a  # one multiply, and no pow backward at 0
    if exponent == 1:
        return a
    return a**exponent


def _where(compare: Callable, a: Value, b: Value, c: Value, d: Value) -> torch.Tensor:
    like = next(v for v in (a, b, c, d) if isinstance(v, torch.Tensor)) if any(isinstance(v, torch.Tensor) for v in (a, b, c, d)) else None
    return torch.where(compare(_tensor(a, like), _tensor(b, like)), _tensor(c, like), _tensor(d, like))
