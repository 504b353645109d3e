"""
What the browser tests need: Debian's Chromium, node and the playwright-core
scripts in tests/browser, and the packaged page.
"""

import os
import shutil

import kaazing_promo

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
RUN_SCRIPT = os.path.join(BROWSER_DIR, "run.mjs")
FRAMES_SCRIPT = os.path.join(BROWSER_DIR, "frames.mjs")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
#: The page as packaged: whichever kaazing_promo these tests import.
WEBROOT = os.path.join(os.path.dirname(os.path.abspath(kaazing_promo.__file__)), "data", "web")


def nodeProgram():
    return shutil.which("node")


def missingPrerequisites(needBrowser=True):
    """
    @return: what is missing to run the browser tests, as one message, or
        L{None}.
    """
    missing = []
    if nodeProgram() is None:
        missing.append("node is not on PATH (apt-get install nodejs)")
    if needBrowser:
        if not os.access(CHROMIUM, os.X_OK):
            missing.append(f"{CHROMIUM} is missing (apt-get install chromium fonts-liberation)")
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
            missing.append("tests/browser/node_modules is missing (npm ci --prefix tests/browser)")
    if not os.path.isfile(os.path.join(WEBROOT, "index.html")):
        missing.append(f"the packaged page is missing: {WEBROOT}/index.html")
    if missing:
        return "browser test prerequisites: " + "; ".join(missing)
    return None
