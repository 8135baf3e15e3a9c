"""Command-line flags generated from config dataclasses (help text from field metadata)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def option(help_text: str, **kw):
    """A dataclass field whose ``help`` metadata becomes the flag's help text."""
    return dataclasses.field(metadata={"help": help_text}, **kw)


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of dataclass ``cls`` (except ``skip``);
    ``field.metadata['help']`` explains it."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = hints[field.name]
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} "
        if kind is bool:
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=help_text,
            )
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(
                flag,
                dest=field.name,
                type=item,
                nargs="+",
                default=field.default,
                help=help_text,
                metavar="N",
            )
        else:
            base = next((t for t in typing.get_args(kind) if t is not types.NoneType), kind)
            parser.add_argument(
                flag, dest=field.name, type=base, default=field.default, help=help_text
            )


def from_arguments(cls: type, args: argparse.Namespace, **overrides):
    """Build ``cls`` from parsed arguments (tuples restored), then apply ``overrides``."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            continue
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**{**values, **overrides})


def check(
    config,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    unit: tuple[str, ...] = (),
    choices: dict[str, tuple] | None = None,
    at_least: dict[str, float] | None = None,
) -> None:
    """Validate fields of ``config``: ``positive`` (> 0), ``non_negative`` (>= 0), ``unit`` (in
    [0, 1]), ``choices`` (field -> allowed values), ``at_least`` (field -> minimum). The first
    violation raises a ValueError naming the field, its value and the rule. A None value (a
    default resolved later) passes the numeric rules."""

    def given(name):
        return getattr(config, name) is not None

    for name in filter(given, positive):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name in filter(given, non_negative):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    for name in filter(given, unit):
        if not 0 <= getattr(config, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(config, name)}")
    for name, allowed in (choices or {}).items():
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(map(str, allowed))}, "
                f"got {getattr(config, name)!r}"
            )
    for name, minimum in (at_least or {}).items():
        if getattr(config, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {getattr(config, name)}")
