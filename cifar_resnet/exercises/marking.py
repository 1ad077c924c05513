"""How an answer is marked: right, wrong with a hint that helps, or not answered yet (never an exception).

An ``Exercise`` names its check, what kind of answer it takes (a function, a class or a value) and the
package's own implementations of it (``own``): a function that calls one of them, or is one of them, is refused,
since it hands in the package's answer instead of the student's. ``no_loop`` refuses a Python loop, for the
exercises that ask for whole-batch tensor code.
"""
from __future__ import annotations

import dis
import functools
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable

RIGHT, WRONG, UNANSWERED = "right", "wrong", "not answered yet"


class NotAnswered(Exception):
    """A function answer that still returns None: its body is still ``...``."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check (answer -> (right, hint)), the kind of answer, and what it may not use."""

    name: str
    check: Callable[[Any], tuple[bool, str]]
    kind: str = "function"
    own: tuple[Any, ...] = ()  # the package's (or PyTorch's) implementations of the answer: objects or names
    no_loop: bool = False


def _code_objects(answer) -> list[types.CodeType]:
    """The code of a function, of a class's methods, or of a partial's function, with every nested code object."""
    if isinstance(answer, functools.partial):
        answer = answer.func
    functions = ([v for v in vars(answer).values() if inspect.isfunction(v)] if inspect.isclass(answer)
                 else [answer] if inspect.isfunction(answer) or inspect.ismethod(answer) else [])
    found, todo = [], [inspect.unwrap(f).__code__ for f in functions]
    while todo:
        code = todo.pop()
        found.append(code)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return found


def _globals(answer) -> dict:
    if isinstance(answer, functools.partial):
        answer = answer.func
    if inspect.isclass(answer):
        module = inspect.getmodule(answer)
        return vars(module) if module else {}
    return getattr(answer, "__globals__", {})


def borrowed(answer, own: tuple[Any, ...]) -> str | None:
    """The name of the package's implementation that ``answer`` is, subclasses or calls; None if it uses none."""
    objects = [o for o in own if not isinstance(o, str)]
    names = {o for o in own if isinstance(o, str)} | {getattr(o, "__name__", "") for o in objects} - {""}
    target = answer.func if isinstance(answer, functools.partial) else answer
    if any(target is o for o in objects) or (inspect.isclass(target) and any(
            inspect.isclass(o) and issubclass(target, o) for o in objects)):
        return getattr(target, "__qualname__", repr(target))
    scope = _globals(answer)
    for code in _code_objects(answer):
        for name in code.co_names:
            if name in names or any(scope.get(name) is o for o in objects):
                return name
    return None


def has_loop(answer) -> bool:
    """Whether the answer's code runs a Python loop (a for loop or a comprehension)."""
    return any(instruction.opname == "FOR_ITER" for code in _code_objects(answer)
               for instruction in dis.get_instructions(code))


def _answered(function: Callable) -> Callable:
    def call(*args, **kwargs):
        result = function(*args, **kwargs)
        if result is None:
            raise NotAnswered
        return result
    return call


def _stub():
    ...


def _left_as_stub(answer) -> bool:
    """A class whose methods other than ``__init__`` are all still ``...`` (nothing written yet)."""
    methods = [v for k, v in vars(answer).items() if inspect.isfunction(v) and k != "__init__"]
    return bool(methods) and all(m.__code__.co_code == _stub.__code__.co_code for m in methods)


def verdict(exercise: Exercise, answer) -> tuple[str, str]:
    """(RIGHT, WRONG or UNANSWERED, the message) for ``answer`` to ``exercise``."""
    name = exercise.name
    if answer is None or answer is ...:
        return UNANSWERED, f"{name}: not answered yet"
    if exercise.kind == "function" and not callable(answer) or exercise.kind == "class" and not inspect.isclass(answer):
        return WRONG, f"{name}: give a {exercise.kind}, not a {type(answer).__name__}"
    if exercise.kind == "class" and _left_as_stub(answer):
        return UNANSWERED, f"{name}: not answered yet (the methods are still ...)"
    if exercise.kind != "value":
        used = borrowed(answer, exercise.own)
        if used:
            return WRONG, (f"{name}: your answer uses {used}, the package's own implementation of what this exercise "
                           f"asks for: write it yourself from tensor operations")
        if exercise.no_loop and has_loop(answer):
            return WRONG, (f"{name}: your answer runs a Python loop: do it for the whole batch at once with tensor "
                           f"operations (indexing, broadcasting, gather), as the exercise asks")
    try:
        right, hint = exercise.check(_answered(answer) if exercise.kind == "function" else answer)
    except NotAnswered:
        return UNANSWERED, f"{name}: not answered yet (the function returns nothing)"
    except Exception as e:  # a student's answer may fail in any way: that is a wrong answer, with the reason
        return WRONG, f"{name}: your answer failed with {type(e).__name__}: {e}"
    return (RIGHT, f"{name}: right") if right else (WRONG, f"{name}: not yet. Hint: {hint}")
