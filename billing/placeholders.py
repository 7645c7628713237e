"""Text templates with named placeholders, such as the statement email subject
(``{institution} statement for {period}: {total} due``) and the journal line
description.

Only the documented names, each written plainly as ``{name}``: no format spec
(``{period:d}``), no conversion (``{period!r}``), no attribute or index
access (``{pi.__class__}``, ``{period[0]}``), no positional fields (``{}``,
``{0}``); ``{{`` and ``}}`` are literal braces. :func:`template_problem` says
what is wrong in one line (the form shows it), and :func:`fill` renders a
template without ``str.format``, so a template that is stored anyway can
neither fail on a value nor reach into an object.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping


class TemplateError(ValueError):
    """A template that uses more than the plain named placeholders."""


def _parts(template: str) -> Iterator[tuple[str, str | None]]:
    """(literal text, placeholder name or None), or TemplateError naming the problem."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        reason = str(exc)
        reason = reason[:1].lower() + reason[1:]
        raise TemplateError(
            f"unbalanced braces ({reason}); write {{{{ and }}}} for a literal brace"
        ) from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            yield literal, None
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        shown += "}"
        if conversion:
            raise TemplateError(f"{shown}: no conversions (!r, !s, !a) here; write {{{name}}}")
        if spec:
            raise TemplateError(f"{shown}: no format specs here; write {{{name}}}")
        yield literal, name


def template_problem(template: str, allowed: tuple[str, ...]) -> str | None:
    """What is wrong with `template` in one line, or None when it may be used."""
    names = ", ".join(f"{{{n}}}" for n in allowed)
    try:
        for _literal, name in _parts(template):
            if name is not None and name not in allowed:
                if name == "" or name.isdigit():
                    return f"{{{name}}}: positional placeholders are not allowed; use {names}"
                if "." in name or "[" in name:
                    return f"{{{name}}}: no attribute or index access here; use {names}"
                return f"unknown placeholder {{{name}}}; use {names}"
    except TemplateError as exc:
        return str(exc)
    return None


def fill(template: str, allowed: tuple[str, ...], values: Mapping[str, str]) -> str:
    """`template` with each placeholder replaced by its value (missing: empty);
    TemplateError for a template :func:`template_problem` refuses."""
    problem = template_problem(template, allowed)
    if problem is not None:
        raise TemplateError(problem)
    return "".join(
        literal + (str(values.get(name, "")) if name is not None else "")
        for literal, name in _parts(template)
    )
