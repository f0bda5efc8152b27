from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an asyncio loop running in the main thread for as long
    as its session-scoped fixture lives; any asyncio test after it would find a running
    loop. Last, the session ends right after them.
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
