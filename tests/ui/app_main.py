"""Entry point the dashboard tests start (the store is wired in by ``tests/ui/conftest.py``)."""

from nicegui import ui

from ui.main import register_pages

register_pages()
ui.run(storage_secret="test-session-secret", reload=False, show=False)
