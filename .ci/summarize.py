"""
Print trial's result as one line, `N passed, N failed, N skipped`.

Reads the log of `python -m twisted.trial --reporter=text`, whose last line
is PASSED (successes=…) or FAILED (failures=…, errors=…, successes=…).
Exits non-zero when the log holds no result or the result is a failure.
"""

import re
import sys


def summarize(text):
    match = None
    for match in re.finditer(r"^(PASSED|FAILED) \(([^)]*)\)\s*$", text, re.M):
        pass
    if match is None:
        return None, False
    counts = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    skipped = counts.get("skips", 0)
    return f"{passed} passed, {failed} failed, {skipped} skipped", match.group(1) == "PASSED" and passed > 0


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        line, ok = summarize(f.read())
    print(line or "0 passed, 1 failed")
    sys.exit(0 if ok else 1)
