"""The models' command-line options, generated from their Config fields (see :func:`~.extractors.base.option`).

Nothing here names a model: each registered extractor's Config says which of its fields have
their own flag (``--crepe-capacity``), with which help, choices and environment variable; every
field of every model, plugins included, can also be set with ``--option MODEL.FIELD=VALUE``.
Values are parsed and validated by the Config itself, once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping, Optional, Sequence

import typer

#: the help panel the generated flags are listed under
PANEL = "Model options"


@dataclass(frozen=True)
class Flag:
    """One Config field with its own CLI flag."""

    model: str
    field: str
    param: str  # the Python parameter name the flag arrives as

    @staticmethod
    def param_name(model: str, field: str) -> str:
        return f"{model}_{field}".replace("-", "_")


def _flag_fields() -> list[tuple[str, dataclasses.Field]]:
    """(model, field) for every Config field that declares a ``flag``, over the registered models."""
    from .extractors import registry

    found = []
    for name in registry.names():
        try:
            config_type = registry.get(name).Config
        except (ImportError, AttributeError, TypeError, KeyError):
            continue  # a broken plugin: `fstore models` says why
        found += [(name, f) for f in dataclasses.fields(config_type) if f.metadata.get("flag")]
    return found


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    text = meta.get("help") or ""
    if meta.get("choices"):
        text += f" One of: {', '.join(map(str, meta['choices']))}."
    if meta.get("env"):
        text += f" Environment variable: {meta['env']}."
    default = f.default
    if default is not None and not isinstance(default, bool):
        text += f" Default: {','.join(map(str, default)) if isinstance(default, tuple) else default}."
    return text


def _parameter(model: str, f: dataclasses.Field) -> tuple[inspect.Parameter, Any]:
    """The keyword parameter (and its annotation) Typer turns into ``f``'s flag; None when not given."""
    default = f.default
    kind: type = bool if isinstance(default, bool) else type(default) if isinstance(default, (int, float)) else str
    annotation = Annotated[Optional[kind], typer.Option(*f.metadata["flag"].split(" "), help=_help(f),
                                                        rich_help_panel=PANEL, show_default=False)]
    name = Flag.param_name(model, f.name)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation), annotation


def with_model_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every registered model's flags to a Typer command; it receives them as ``model_flags``.

    ``command`` must take a ``model_flags: dict[str, dict[str, Any]]`` keyword (hidden from the
    CLI): the values given, by model and field.
    """
    from typing import get_type_hints

    hints = get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    params = [p.replace(annotation=hints.get(p.name, p.annotation))
              for p in signature.parameters.values() if p.name != "model_flags"]
    flags: list[Flag] = []
    for model, f in _flag_fields():
        param, annotation = _parameter(model, f)
        params.append(param)
        hints[param.name] = annotation
        flags.append(Flag(model, f.name, param.name))

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given: dict[str, dict[str, Any]] = {}
        for flag in flags:
            value = kwargs.pop(flag.param, None)
            if value is not None:
                given.setdefault(flag.model, {})[flag.field] = value
        return command(*args, model_flags=given, **kwargs)

    hints.pop("model_flags", None)
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = hints
    del wrapper.__wrapped__  # Typer must see the new signature, not the wrapped one
    return wrapper


def parse_option_texts(texts: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["crepe.capacity=tiny", ...]`` -> ``{"crepe": {"capacity": "tiny"}}``; ValueError on bad syntax."""
    parsed: dict[str, dict[str, str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        model, dot, field = key.strip().partition(".")
        if not (sep and dot and model and field):
            raise ValueError(f"--option {text!r}: write MODEL.FIELD=VALUE, e.g. crepe.capacity=tiny")
        parsed.setdefault(model, {})[field.strip()] = value
    return parsed


def model_configs(names: Sequence[str], flags: Mapping[str, Mapping[str, Any]], texts: Sequence[str],
                  shared: Mapping[str, Any]) -> dict[str, Any]:
    """Each named model's Config from its flags, ``--option`` texts and the run-wide ``shared`` options.

    ``shared`` (e.g. ``precision``) applies to every model whose Config has that field. An
    ``--option`` for a registered model that is not in ``names`` is ignored; one for an unknown
    model or field is a ValueError, as is any value its Config refuses.
    """
    from .extractors import registry

    known = registry.names()
    given = parse_option_texts(texts)
    for model in given:
        if model not in known:
            raise ValueError(f"--option {model}.…: unknown model {model!r}; valid models: {', '.join(known)}")
    configs = {}
    for name in names:
        config_type = registry.get(name).Config
        fields = {f.name for f in dataclasses.fields(config_type)}
        values = {k: v for k, v in shared.items() if k in fields}
        values.update(flags.get(name, {}))
        for field, text in given.get(name, {}).items():
            try:
                values[field] = config_type.from_text(field, text)
            except ValueError as e:
                raise ValueError(f"--option {name}.{field}: {e}") from None
        try:
            configs[name] = config_type(**values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: {e}") from None
    return configs
