"""The image tests' figures (build time, size, start to ready) in pytest's closing summary."""

import pytest

from tests.deploy.image import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("the images (tests/deploy/test_image.py, test_project_image.py)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
