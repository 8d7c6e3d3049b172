"""One modality or project name in, every spelling out — derived here and nowhere else."""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass

from mmgen.errors import MmgenError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[_-][A-Za-z0-9]+)*$")
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_-]+")
# modules the generated files import by their bare names: a modality with one of these names
# would shadow them inside its own package
_RESERVED = {"mmgen", "torch", "transformers", "numpy", "math", "typing", "pytest", "PIL"}
_MAX_LENGTH = 40


@dataclass(frozen=True)
class Names:
    """``Names.of("depth-map")``: snake ``depth_map``, camel ``DepthMap``, upper ``DEPTH_MAP``,
    kebab ``depth-map``; the generated classes are ``DepthMapConfig`` and so on.
    """

    snake: str
    camel: str
    upper: str
    kebab: str

    @classmethod
    def of(cls, name: str) -> Names:
        check_name(name)
        words = [w.lower() for w in _WORD_BOUNDARY.split(name) if w]
        return cls(
            snake="_".join(words),
            camel="".join(w[:1].upper() + w[1:] for w in words),
            upper="_".join(words).upper(),
            kebab="-".join(words),
        )

    @property
    def loader_class(self) -> str:
        return f"{self.camel}Loader"

    @property
    def config_class(self) -> str:
        return f"{self.camel}Config"

    @property
    def processor_class(self) -> str:
        return f"{self.camel}Processor"

    @property
    def modality_class(self) -> str:
        return f"{self.camel}Modality"


def check_name(name: object, what: str = "name") -> None:
    """Raise MmgenError unless ``name`` is usable as a Python module and class stem."""
    if not isinstance(name, str) or not name:
        raise MmgenError(f"{what} must be a non-empty string")
    if len(name) > _MAX_LENGTH:
        raise MmgenError(f"{what} {name!r} is longer than {_MAX_LENGTH} characters")
    if "/" in name or "\\" in name or ".." in name or "." in name:
        raise MmgenError(f"{what} {name!r} must not contain path separators or dots")
    if not _NAME.match(name):
        raise MmgenError(
            f"{what} {name!r} must start with a letter and hold only letters, digits and single"
            " '_' or '-' between them (e.g. 'audio', 'depth_map', 'eeg-64')"
        )
    snake = _WORD_BOUNDARY.sub("_", name).lower()
    if keyword.iskeyword(snake) or keyword.issoftkeyword(snake):
        raise MmgenError(f"{what} {name!r} is a Python keyword")
    if snake in sys.stdlib_module_names or snake in {r.lower() for r in _RESERVED}:
        raise MmgenError(f"{what} {name!r} would shadow the module {snake!r}; choose another name")
