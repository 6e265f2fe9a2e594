"""Tool calls written as Python: ``read(path="a.py")``.

Gemma 3 writes them in fenced ``tool_code`` blocks (often as ``print(read(...))``), Llama 3.2
and Gemma 3's documented prompt as a list ``[read(path="a.py"), grep(pattern="x")]``, Llama 3.1
after ``<|python_tag|>`` as ``brave_search.call(query="...")``. The text is parsed with ``ast``
and every argument must be a literal (``ast.literal_eval``): nothing is ever evaluated.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from typing import Any

from agentls.llm.callsyntax import RawCall

# JSON spellings small models mix into Python calls.
_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}


def parse_python_calls(
    code: str,
    names: Collection[str] | None = None,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RawCall] | None:
    """The calls in ``code`` if it is nothing but calls, else None.

    Accepted statements: ``f(...)``, ``print(f(...))``, ``x.call(...)`` (Llama's built-in tool
    form; the tool is ``x``), a list or tuple of calls, ``result = f(...)``, and ``print(result)``
    (ignored). With ``names``, every callee must be
    one of them (used where nothing but the syntax says this is a call). Keyword arguments
    become the arguments; positional ones are matched to the tool's schema properties in order
    when ``schemas`` knows the tool.
    """
    code = code.strip()
    if not code or "(" not in code:
        return None
    try:
        tree = ast.parse(code, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    calls: list[RawCall] = []
    for statement in tree.body:
        if _is_print_of_names(statement):
            continue  # Gemma 3 writes `result = read(...)` then `print(result)`
        if isinstance(statement, ast.Expr) or (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            value = statement.value
        else:
            return None
        nodes = _call_nodes(value)
        if nodes is None:
            return None
        for node in nodes:
            call = _to_raw_call(node, code, names, schemas)
            if call is None:
                return None
            calls.append(call)
    return calls or None


def _is_print_of_names(statement: ast.stmt) -> bool:
    """``print(result)``: shows a variable, calls nothing."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return False
    call = statement.value
    return (
        isinstance(call.func, ast.Name)
        and call.func.id == "print"
        and not call.keywords
        and all(isinstance(arg, ast.Name) for arg in call.args)
    )


def _call_nodes(node: ast.expr) -> list[ast.Call] | None:
    """The calls an expression statement stands for, or None if it is something else."""
    if isinstance(node, ast.List | ast.Tuple):
        items: list[ast.Call] = []
        for element in node.elts:
            inner = _call_nodes(element)
            if inner is None:
                return None
            items.extend(inner)
        return items
    if not isinstance(node, ast.Call):
        return None
    if (
        isinstance(node.func, ast.Name)
        and node.func.id == "print"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Call)
    ):
        return [node.args[0]]  # Gemma 3's tool_code: print(read(path="a.py"))
    return [node]


def _callee(func: ast.expr) -> str | None:
    """``f`` for ``f(...)``, ``x`` for ``x.call(...)``, ``f`` for ``ns.f(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr == "call" and isinstance(func.value, ast.Name):
            return func.value.id
        return func.attr
    return None


def _to_raw_call(
    node: ast.Call,
    code: str,
    names: Collection[str] | None,
    schemas: Mapping[str, Mapping[str, Any]] | None,
) -> RawCall | None:
    name = _callee(node.func)
    if name is None or (names is not None and name not in names):
        return None
    raw = ast.get_source_segment(code, node) or ""
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:  # **kwargs
            return None
        ok, value = _literal(keyword.value)
        if not ok:
            return None
        arguments[keyword.arg] = value
    positional: list[Any] = []
    for arg_node in node.args:
        ok, value = _literal(arg_node)
        if not ok:
            return None
        positional.append(value)
    if positional:
        order = _property_order(schemas, name)
        if len(positional) > len(order):
            # No way to name them: hand the call on without arguments, so the tool's usage
            # message tells the model how to call it.
            return RawCall(name, None, raw)
        for key, value in zip(order, positional, strict=False):
            arguments.setdefault(key, value)
    return RawCall(name, arguments, raw)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """``(True, value)`` for a literal (or a JSON ``true``/``false``/``null``), else
    ``(False, None)``."""
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return True, _JSON_NAMES[node.id]
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _property_order(schemas: Mapping[str, Mapping[str, Any]] | None, name: str) -> list[str]:
    """The tool's argument names, required first, as its schema lists them."""
    schema = (schemas or {}).get(name) or {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return []
    required = [k for k in schema.get("required", []) if k in props]
    return required + [k for k in props if k not in required]
