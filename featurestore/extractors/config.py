"""An extractor's options: a frozen dataclass whose fields are declared with :func:`option`, which
says what the CLI and the checks need to know of each (help, choices, environment variable, flag,
canonical spelling, whether it changes the output)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


def option(default: Any, help: str, *, choices: Sequence[Any] | None = None, env: str | None = None,
           flag: str | None = None, parse: Callable[[Any], Any] | None = None, fingerprint: bool = True) -> Any:
    """A Config field with what the CLI and the validation need to know of it.

    ``help``: one line for ``--help``; ``choices``: the allowed values (checked by the Config);
    ``env``: an environment variable read when the field is left at None; ``flag``: the field's
    own CLI spelling (``"--crepe-capacity"``, ``"--crepe-viterbi/--no-crepe-viterbi"``; every
    field is settable with ``--option MODEL.FIELD=VALUE`` anyway); ``parse``: turns any accepted
    spelling into the one canonical value; ``fingerprint=False`` for what does not change the
    output (a local path whose file's checksum is fingerprinted instead).
    """
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "env": env,
                "flag": flag, "parse": parse, "fingerprint": fingerprint}
    return field(default=default, metadata=metadata)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class ExtractorConfig:
    """An extractor's options. Subclasses add fields declared with :func:`option`.

    Values are parsed and validated here, once: environment variables fill fields left at None,
    ``parse`` makes each value canonical, ``choices`` are enforced, then :meth:`validate` checks
    what spans several fields. Every field goes in the fingerprint unless declared with
    ``fingerprint=False``.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and meta.get("env"):
                value = os.environ.get(meta["env"]) or None
            if value is not None and meta.get("parse") is not None:
                value = meta["parse"](value)
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ValueError(f"{f.name} {value!r}: use one of {', '.join(map(str, choices))}")
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; raise ValueError. Subclasses override."""

    @classmethod
    def from_text(cls, name: str, text: str) -> Any:
        """The value of field ``name`` written as text (``--option model.name=text``), typed by its default."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise ValueError(f"no option {name!r}; options: {', '.join(fields)}")
        default = fields[name].default
        if isinstance(default, bool):
            if text.strip().lower() not in _TRUE + _FALSE:
                raise ValueError(f"{name} {text!r}: use true or false")
            return text.strip().lower() in _TRUE
        if isinstance(default, (int, float)):
            try:
                return type(default)(text)
            except ValueError:
                raise ValueError(f"{name} {text!r}: not a {type(default).__name__}") from None
        return text

    def fingerprinted(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("fingerprint", True)
        }


def config_fields(config_type: type[ExtractorConfig]) -> set[str]:
    """The option names of a Config class."""
    return {f.name for f in dataclasses.fields(config_type)}
