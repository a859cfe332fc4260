"""Starts the real dashboard process for the browser tests (configured from ``AML_*``)."""

from aml.settings import load_settings
from ui.main import run

if __name__ in {"__main__", "__mp_main__"}:
    run(load_settings())
