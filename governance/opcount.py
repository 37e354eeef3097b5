"""How many operations an OpenQASM 2 or 3 program expands to, counted from its text without expanding it.

A 600-byte program whose gate definitions nest (`gate g1 a { g0 a; g0 a; }` ... 20 levels deep)
expands to millions of operations: qiskit's parser builds each of them, and pricing it would take
gigabytes and minutes. This counts first, in a single pass over the tokens, so that admission can
refuse such a program before qiskit ever sees it:

- a gate definition (or a `def` subroutine) costs what its body costs, computed once, when it is
  defined (definitions precede their use, so this is bottom-up and memoised), a library gate 1;
- a gate applied to registers is broadcast: `h q;` on a 5-qubit register is 5 operations;
- a `for` loop multiplies its body by its iterations (bounds must be integers known from the
  text: literals or `const`s); a `while` loop has no bound known before it runs and is refused;
- `if`/`else` count both branches, `pow(k) @` k times.

Arithmetic saturates at SATURATED, so no input makes the count itself large or slow. The count
errs high and is not a validator: what it does not recognise it counts as one operation and
leaves the errors to qiskit's parser. Declared qubits and bits are counted apart (`bits`): a
`qreg q[100000000];` costs memory with no operation at all. Pure: no qiskit import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SATURATED = 1 << 62  # counts stop growing here
MAX_NESTING = 64  # blocks inside blocks (loops, ifs, boxes); deeper programs are refused


class Uncountable(ValueError):
    """The program's size cannot be known from its text (an unbounded loop, nesting too deep)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Count:
    operations: int  # after expanding gate definitions, broadcasting and loops (saturated)
    bits: int  # qubits and classical bits declared


def _add(a: int, b: int) -> int:
    return min(a + b, SATURATED)


def _mul(a: int, b: int) -> int:
    return min(a * b, SATURATED) if a and b else 0


_COMMENT = re.compile(r"//[^\n]*|/\*.*?(?:\*/|\Z)|^[ \t]*(?:#?pragma|@)[^\n]*", re.DOTALL | re.MULTILINE)
_TOKEN = re.compile(r"""
    "[^"\n]*"?
  | (?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?(?:dt|ns|us|µs|ms|s|im)?
  | \$?[^\W\d]\w*|\$\d+
  | ->|\+\+|\*\*|==|!=|<=|>=|&&|\|\||<<|>>|[-+*/%&|^]=|\S
""", re.VERBOSE)

_CLASSICAL = frozenset({"int", "uint", "float", "angle", "bool", "duration", "stretch", "complex", "array",
                        "input", "output", "const", "readonly", "mutable"})
_SKIP_STATEMENT = frozenset({"OPENQASM", "include", "defcalgrammar", "break", "continue", "end", "return"})
_ASSIGN = frozenset({"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="})
_MODIFIERS = frozenset({"ctrl", "negctrl", "inv", "pow"})


def count_operations(source: str) -> Count:
    """The program's expanded size. Raises Uncountable when it cannot be known from the text."""
    text = _COMMENT.sub(lambda m: "\n" * m.group().count("\n"), source)  # comments keep their lines
    counter = _Counter(text, _TOKEN.findall(text))
    try:
        try:
            return Count(counter.program(), counter.bits)
        except RecursionError:  # a shape MAX_NESTING does not see: refused, never a crash
            raise Uncountable("the program nests too deep to be priced") from None
    except Uncountable as exc:  # where: the line of the token it stopped at
        exc.line = text.count("\n", 0, _offset(text, counter.text[:counter.at_error + 1])) + 1
        raise


def _offset(text: str, tokens: list[str]) -> int:
    """Where the last of `tokens` starts in `text` (for an error's line)."""
    position, start = 0, 0
    for token in tokens:
        start = text.find(token, position)
        position = start + len(token)
    return start


class _Counter:
    def __init__(self, source: str, tokens: list[str]) -> None:
        self.source = source
        self.text = tokens
        self.n = len(tokens)
        self.at_error = 0
        self.i = 0
        self.costs: dict[str, int] = {}  # gate and subroutine -> operations one call expands to
        self.registers: dict[str, int] = {}  # quantum and classical registers -> size
        self.consts: dict[str, int] = {}
        self.bits = 0
        self.depth = 0

    # ---------------------------------------------------------------- tokens

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.text[j] if j < self.n else ""

    def take(self) -> str:
        token = self.peek()
        self.i += 1
        return token

    def mark(self) -> None:
        """Marks where an error is (count_operations turns it into a line)."""
        self.at_error = self.i

    def group(self, opening: str) -> list[str]:
        """The tokens inside the bracket that starts here (consumed, brackets excluded)."""
        closing = {"(": ")", "[": "]", "{": "}"}[opening]
        if self.peek() != opening:
            return []
        self.i += 1
        start, depth = self.i, 1
        while self.i < self.n:
            token = self.text[self.i]
            if token == opening:
                depth += 1
            elif token == closing:
                depth -= 1
                if depth == 0:
                    self.i += 1
                    return self.text[start:self.i - 1]
            self.i += 1
        return self.text[start:]

    def rest(self) -> list[str]:
        """The tokens to the end of the statement (its `;` consumed), brackets kept whole."""
        start, depth = self.i, 0
        while self.i < self.n:
            token = self.text[self.i]
            if token in "([{":
                depth += 1
            elif token in ")]}":
                if depth == 0:
                    return self.text[start:self.i]  # a block's end: leave it to the block
                depth -= 1
            elif token == ";" and depth == 0:
                self.i += 1
                return self.text[start:self.i - 1]
            self.i += 1
        return self.text[start:]

    # ---------------------------------------------------------------- statements

    def program(self) -> int:
        total, scope = 0, dict[str, int]()  # the program's aliases (`let`)
        while self.i < self.n:
            before = self.i
            total = _add(total, self.statement(scope))
            if self.i == before:  # a stray closing bracket: qiskit's parser will say what is wrong
                self.i += 1
        return total

    def block(self, scope: dict[str, int]) -> int:
        """`{ ... }` or a single statement (a loop's or an if's body)."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.mark()
            raise Uncountable(f"blocks nest more than {MAX_NESTING} deep")
        try:
            if self.peek() != "{":
                return self.statement(scope)
            self.i += 1
            total = 0
            while self.i < self.n and self.peek() != "}":
                before = self.i
                total = _add(total, self.statement(scope))
                if self.i == before:
                    self.i += 1
            self.i += 1
            return total
        finally:
            self.depth -= 1

    def statement(self, scope: dict[str, int]) -> int:
        head = self.peek()
        if head in _SKIP_STATEMENT:
            return self.expression(self.rest(), scope)
        if head == "{":
            return self.block(scope)
        if head in ("qreg", "creg"):
            self.take()
            name = self.take()
            self.declare(name, self.size(self.group("[")))
            self.rest()
            return 0
        if head in ("qubit", "bit") and self.peek(1) != "(":
            self.take()
            size = self.size(self.group("[")) if self.peek() == "[" else 1
            self.declare(self.take(), size)
            return self.expression(self.rest(), scope)  # `bit c = measure q;`
        if head in ("gate", "def"):
            return self.definition(head)
        if head in ("opaque", "extern"):
            self.take()
            self.costs[self.take()] = 1
            self.rest()
            return 0
        if head in ("defcal", "cal"):  # pulse-level definitions: no operations of their own
            while self.i < self.n and self.peek() not in ("{", ";"):
                self.i += 1
            if self.peek() == "{":
                self.group("{")
            else:
                self.i += 1
            return 0
        if head == "for":
            return self.for_loop(scope)
        if head == "while":
            self.mark()
            raise Uncountable("a while loop cannot be priced: how often it runs is only known when it runs; "
                              "use a for loop over a range")
        if head == "if":
            self.take()
            self.group("(")
            total = self.block(scope)
            if self.peek() == "else":
                self.take()
                total = _add(total, self.block(scope))
            return total
        if head == "box":
            self.take()
            self.group("[")
            return self.block(scope)
        if head == "let":
            self.take()
            name = self.take()
            tokens = self.rest()
            scope[name] = self.width(tokens[1:] if tokens[:1] == ["="] else tokens, scope, concatenate=True)
            return 0
        if head in _CLASSICAL:
            tokens = self.rest()
            if len(tokens) >= 4 and tokens[0] == "const" and "=" in tokens:
                at = tokens.index("=")
                value = _evaluate(tokens[at + 1:], self.consts)
                if value is not None:
                    self.consts[tokens[at - 1]] = value
            return self.expression(tokens, scope)
        if head in ("measure", "reset"):
            self.take()
            tokens = self.rest()
            return self.width(tokens[:tokens.index("->")] if "->" in tokens else tokens, scope)
        if head == "barrier":
            self.take()
            self.rest()
            return 1
        return self.operation(scope)

    def definition(self, kind: str) -> int:
        """`gate name(params) a, b { body }` or `def name(qubit[n] a, ...) -> type { body }`: its cost."""
        self.take()
        name = self.take()
        params = self.group("(")
        scope: dict[str, int] = {}
        if kind == "def":  # qubit[n] a: broadcasting over `a` inside is n operations
            for declared in _split(params):
                if declared and declared[0] == "qubit" and len(declared) >= 2:
                    size = 1
                    if declared[1] == "[":
                        size = _evaluate(declared[2:declared.index("]")] if "]" in declared else [], self.consts) or 1
                    scope[declared[-1]] = max(1, size)
        else:
            while self.i < self.n and self.peek() not in ("{", ";"):
                token = self.take()
                if token != ",":
                    scope[token] = 1
        while self.i < self.n and self.peek() not in ("{", ";"):  # -> return type
            self.i += 1
        if self.peek() != "{":
            self.rest()
            cost = 1
        else:
            cost = self.block(scope)
        self.costs[name] = max(1, cost)
        return 0

    def for_loop(self, scope: dict[str, int]) -> int:
        start = self.i
        self.take()
        while self.i < self.n and self.peek() != "in":
            if self.peek() in ("{", ";"):
                return self.block(scope)  # malformed: qiskit's parser says what is wrong
            self.i += 1
        self.take()
        if self.i >= self.n:
            return 0  # malformed: qiskit's parser says what is wrong
        if self.peek() == "[":
            iterations = _range_length(self.group("["), self.consts)
        elif self.peek() == "{":
            items = self.group("{")
            iterations = len(_split(items)) if items else 0
        else:
            iterations = self.registers.get(self.peek()) or scope.get(self.peek())
            self.take()
        if iterations is None:
            self.i = start
            self.mark()
            raise Uncountable("a for loop's range cannot be priced: its bounds must be integers written in the "
                              "program (literals or consts)")
        return _mul(iterations, self.block(scope))

    def operation(self, scope: dict[str, int]) -> int:
        """A gate call (with modifiers, parameters and broadcast), a subroutine call or an assignment."""
        tokens = self.rest()
        if len(tokens) == 5 and tokens[2] == "[" and tokens[4] == "]" and tokens[0] not in _MODIFIERS:
            return self.costs.get(tokens[0], 1)  # `h q[0]`: the usual statement, quickly
        if not _ASSIGN.isdisjoint(tokens) and not _ASSIGN.isdisjoint(_top_level(tokens)):
            return self.expression(tokens, scope)
        repeat = 1
        while len(tokens) >= 2 and tokens[0] in _MODIFIERS:
            modifier, tokens = tokens[0], tokens[1:]
            arguments: list[str] = []
            if tokens and tokens[0] == "(":
                arguments, tokens = _bracketed(tokens)
            if modifier == "pow":
                value = _evaluate(arguments, self.consts)
                repeat = _mul(repeat, max(1, abs(value))) if value is not None else repeat
            if tokens and tokens[0] == "@":
                tokens = tokens[1:]
        if not tokens:
            return 0
        name, tokens = tokens[0], tokens[1:]
        cost = self.costs.get(name, 1)
        extra = 0
        if tokens and tokens[0] == "(":
            arguments, tokens = _bracketed(tokens)
            extra = self.expression(arguments, scope)  # a subroutine called with measured arguments...
        if tokens and tokens[0] == "[":  # delay[100ns] q;
            _, tokens = _bracketed(tokens)
        return _add(_mul(_mul(cost, repeat), self.width(tokens, scope)), extra)

    def expression(self, tokens: list[str], scope: dict[str, int]) -> int:
        """Operations inside an expression: `measure q` and calls of subroutines."""
        total = 0
        for at, token in enumerate(tokens):
            if token == "measure":
                operand: list[str] = []
                for following in tokens[at + 1:]:
                    if following in ("->", ";", ")", ",") and not operand.count("[") > operand.count("]"):
                        break
                    operand.append(following)
                total = _add(total, self.width(operand, scope))
            elif token in self.costs and at + 1 < len(tokens) and tokens[at + 1] == "(":
                total = _add(total, self.costs[token])
        return total

    # ---------------------------------------------------------------- sizes

    def declare(self, name: str, size: int) -> None:
        self.registers[name] = size
        self.bits = _add(self.bits, size)

    def size(self, tokens: list[str]) -> int:
        value = _evaluate(tokens, self.consts)
        return max(1, value) if value is not None else 1

    def width(self, tokens: list[str], scope: dict[str, int], concatenate: bool = False) -> int:
        """How many times an operation over these arguments is broadcast: the largest register (or
        slice) among them, 1 for single qubits; with `concatenate`, the size of `a ++ b[0:3]`."""
        if not concatenate and "[" in tokens and ":" not in tokens and "{" not in tokens and \
                tokens.count("[") == tokens.count(",") + 1:
            return 1  # `q[0], r[1]`: every argument a single qubit (the usual case, quickly)
        widths = []
        for argument in _split(tokens, "++" if concatenate else ","):
            if not argument:
                continue
            name = argument[0]
            size = scope.get(name) or self.registers.get(name) or 1
            if len(argument) > 1 and argument[1] == "[":
                index, _ = _bracketed(argument[1:])
                if ":" in index:
                    size = _range_length(index, self.consts) or size
                elif index[:1] == ["{"]:
                    size = len(_split(index[1:-1])) or 1
                else:
                    size = 1
            widths.append(size)
        if not widths:
            return 1
        return min(sum(widths), SATURATED) if concatenate else max(widths)


# ------------------------------------------------------------------ helpers over token lists


def _bracketed(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(inside, after) of the bracket `tokens` starts with."""
    opening = tokens[0]
    closing = {"(": ")", "[": "]", "{": "}"}[opening]
    depth = 0
    for at, token in enumerate(tokens):
        if token == opening:
            depth += 1
        elif token == closing:
            depth -= 1
            if depth == 0:
                return tokens[1:at], tokens[at + 1:]
    return tokens[1:], []


def _top_level(tokens: list[str]) -> list[str]:
    depth, out = 0, []
    for token in tokens:
        if token in "([{":
            depth += 1
        elif token in ")]}":
            depth -= 1
        elif depth == 0:
            out.append(token)
    return out


def _split(tokens: list[str], separator: str = ",") -> list[list[str]]:
    parts: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        if token in "([{":
            depth += 1
        elif token in ")]}":
            depth -= 1
        if token == separator and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _range_length(tokens: list[str], consts: dict[str, int]) -> int | None:
    """Items in `a:b` or `a:step:b` (both ends included, as OpenQASM 3 has it); None if not known."""
    parts: list[list[str]] = [[]] if tokens else []
    for token in tokens:
        if token == ":":
            parts.append([])
        else:
            parts[-1].append(token)
    evaluated = [_evaluate(p, consts) for p in parts]
    if len(evaluated) == 1:
        return 1 if evaluated[0] is not None else None
    values = [v for v in evaluated if v is not None]
    if len(evaluated) not in (2, 3) or len(values) != len(evaluated):
        return None
    start, step, stop = (values[0], 1, values[1]) if len(values) == 2 else (values[0], values[1], values[2])
    if step == 0:
        return None
    if step > 0:
        return (stop - start) // step + 1 if stop >= start else 0
    return (start - stop) // -step + 1 if start >= stop else 0


def _evaluate(tokens: list[str], consts: dict[str, int]) -> int | None:
    """An integer expression of literals, consts, + - * / % ** and brackets; None when it is not one."""
    position = 0

    def peek() -> str:
        return tokens[position] if position < len(tokens) else ""

    def atom() -> int | None:
        nonlocal position
        token = peek()
        position += 1
        if token == "(":
            value = additive()
            position += 1 if peek() == ")" else 0
            return value
        if token == "-":
            value = atom()
            return -value if value is not None else None
        if token == "+":
            return atom()
        if token.replace("_", "").isdigit():
            return min(int(token.replace("_", "")), SATURATED)
        return consts.get(token)

    def power() -> int | None:
        nonlocal position
        base = atom()
        if peek() == "**":
            position += 1
            exponent = power()
            if base is None or exponent is None or exponent < 0:
                return None
            if abs(base) > 1 and exponent > 62:
                return SATURATED
            powered: int = base ** exponent
            return max(-SATURATED, min(powered, SATURATED))
        return base

    def multiplicative() -> int | None:
        nonlocal position
        value = power()
        while peek() in ("*", "/", "%"):
            op = peek()
            position += 1
            right = power()
            if value is None or right is None or (op != "*" and right == 0):
                return None
            value = max(-SATURATED, min(value * right, SATURATED)) if op == "*" else \
                int(value / right) if op == "/" else value % right
        return value

    def additive() -> int | None:
        nonlocal position
        value = multiplicative()
        while peek() in ("+", "-"):
            op = peek()
            position += 1
            right = multiplicative()
            if value is None or right is None:
                return None
            value = max(-SATURATED, min(value + right if op == "+" else value - right, SATURATED))
        return value

    if not tokens:
        return None
    result = additive()
    return result if position >= len(tokens) else None
