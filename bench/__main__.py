"""``python -m bench <name> [options]`` runs ``bench.<name>.main(options)``.

Example: ``.venv/bin/python -m bench ingest --rate 1000 --seconds 20``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast


def available() -> list[str]:
    """Benchmark modules that have a ``main``."""
    here = str(Path(__file__).parent)
    return sorted(m.name for m in pkgutil.iter_modules([here]) if not m.name.startswith("_"))


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to one benchmark module's ``main``."""
    args = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not args or args[0] in {"-h", "--help"} or args[0].replace("-", "_") not in names:
        print("usage: python -m bench {" + ",".join(names) + "} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{args[0].replace('-', '_')}")
    entry = cast(Callable[..., int | None], module.main)
    if not inspect.signature(entry).parameters:  # a main() that reads sys.argv itself
        sys.argv = [f"bench.{args[0]}", *args[1:]]
        return int(entry() or 0)
    return int(entry(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
