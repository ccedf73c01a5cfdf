"""The whole report as one PDF: the HTML page printed by headless Chromium.

Chromium opens the page with ``?render=all`` (every ``<details>`` opened, every figure drawn; the
page's print stylesheet drops the navigation and scroll boxes) and prints it with
``--print-to-pdf`` once its virtual clock has run :data:`VIRTUAL_TIME_MS` (time for Vega to draw:
virtual time advances as fast as the page's work allows, so a small report is done in seconds).
Chromium is found as ``chromium`` (``make chromium`` installs Debian's) or ``chromium-browser``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mtlens.errors import MtlensError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIRTUAL_TIME_MS = 60_000
"""Virtual time Chromium gives the page to draw its figures before printing."""
TIMEOUT_S = 600
"""Wall-clock limit of one print."""


def find_chromium() -> str:
    """Path of a Chromium executable, or :class:`~mtlens.errors.MtlensError` naming how to install one."""
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    raise MtlensError(
        "--formats pdf: the report PDF is printed by headless Chromium, which is not installed "
        f"(looked for {', '.join(CHROMIUM_NAMES)}); install it (`make chromium`, or apt-get install chromium)"
    )


def print_pdf(page: Path, pdf: Path) -> Path:
    """Print the HTML ``page`` to ``pdf`` (written atomically: a temporary file renamed) and return it."""
    chromium = find_chromium()
    pdf = Path(pdf)
    with tempfile.TemporaryDirectory() as profile:
        partial = pdf.with_name(pdf.name + ".partial")
        result = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--virtual-time-budget={VIRTUAL_TIME_MS}",
                f"--print-to-pdf={partial}",
                Path(page).resolve().as_uri() + "?render=all",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        if result.returncode != 0 or not partial.exists() or partial.read_bytes()[:5] != b"%PDF-":
            partial.unlink(missing_ok=True)
            raise MtlensError(f"Chromium could not print {page} to PDF: {result.stderr.strip()[-500:]}")
        partial.replace(pdf)
    return pdf
