"""
What interop/run makes of a peer suite's results: the outcome of every test
read from the suite's JUnit XML, the differences between a path through the
gateway and the direct run, the documented list of expected differences
(interop/expected.toml), and the Markdown report.

Standard library only (plus attrs), so that tests/test_interop.py checks it
in memory.
"""

import fnmatch
import re
import tomllib
import xml.etree.ElementTree as ElementTree

import attr

PASS, FAIL, SKIP, NOT_RUN = "pass", "fail", "skip", "not run"
OUTCOMES = (PASS, FAIL, SKIP, NOT_RUN)

# How a runner names its tests in JUnit XML.
#   file:   <testcase classname=FILE name="describe > test"> (vitest, and
#           node --test through interop/shims/node-test-reporter.mjs)
#   pytest: <testcase classname=MODULE.CLASS name=TEST>
STYLES = ("file", "pytest")

MESSAGE_LENGTH = 240


@attr.s(frozen=True)
class TestResult:
    """
    One test's outcome in one run.

    @ivar outcome: one of L{OUTCOMES}.
    @ivar message: the first line of its failure or skip message, or C{""}.
    """

    outcome = attr.ib()
    message = attr.ib(default="")


class ResultsError(Exception):
    """
    A results file that cannot be read (the message says which and why).
    """


def _firstLine(text):
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line[:MESSAGE_LENGTH]
    return ""


def _lastLine(text):
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line:
            return line[:MESSAGE_LENGTH]
    return ""


def _failureMessage(element):
    message = _firstLine(element.get("message")) or _firstLine(element.text)
    if "Traceback (most recent call last)" in message:
        # pika's threaded tests re-raise the thread's whole traceback: what
        # went wrong is its last line.
        message = _lastLine(element.text) or message
    # pytest marks the lines of its explanation with "E   ".
    return re.sub(r"^E\s+", "", message)


def _outcome(testcase):
    for tag in ("failure", "error"):
        element = testcase.find(tag)
        if element is not None:
            return TestResult(FAIL, _failureMessage(element))
    element = testcase.find("skipped")
    if element is not None:
        return TestResult(SKIP, _firstLine(element.get("message")) or _firstLine(element.text))
    return TestResult(PASS)


def _testId(style, testcase):
    name = testcase.get("name", "")
    classname = testcase.get("classname", "")
    if not classname:
        return name
    return f"{classname}::{name}" if style == "pytest" else f"{classname} > {name}"


def parseJUnit(text, style):
    """
    Read every test's outcome from a runner's JUnit XML.

    @param text: the XML (L{bytes} or L{str}).
    @param style: one of L{STYLES}: how the runner names its tests.
    @return: L{dict} of test id to L{TestResult}, in document order; a name
        that occurs twice gets C{" [2]"}, C{" [3]"}... appended.
    @raise ResultsError: for XML that does not parse.
    """
    if style not in STYLES:
        raise ValueError(f"unknown JUnit style {style!r}")
    try:
        document = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise ResultsError(f"not JUnit XML: {e}") from None
    results = {}
    seen = {}

    def visit(element):
        for child in element:
            if child.tag == "testcase":
                testId = _testId(style, child)
                seen[testId] = seen.get(testId, 0) + 1
                if seen[testId] > 1:
                    testId = f"{testId} [{seen[testId]}]"
                results[testId] = _outcome(child)
            elif child.tag == "testsuite":
                visit(child)

    if document.tag == "testsuite":
        # pytest before 5.1, and some runners, write one bare <testsuite>.
        wrapper = ElementTree.Element("testsuites")
        wrapper.append(document)
        document = wrapper
    visit(document)
    return results


def counts(results):
    """
    @return: L{dict} of outcome to how many tests had it.
    """
    out = dict.fromkeys(OUTCOMES, 0)
    for result in results.values():
        out[result.outcome] += 1
    return out


@attr.s(frozen=True)
class Difference:
    """
    A test whose outcome through a gateway path is not its direct one.

    @ivar message: the gateway run's failure message (or the direct run's,
        when the test fails only there).
    """

    test = attr.ib()
    direct = attr.ib()
    gateway = attr.ib()
    message = attr.ib(default="")


def compare(direct, gateway):
    """
    @param direct: the direct run's L{parseJUnit} results.
    @param gateway: a gateway path's.
    @return: a L{list} of L{Difference}, by test id; a test missing from
        one side counts as L{NOT_RUN} there.
    """
    differences = []
    missing = TestResult(NOT_RUN)
    for testId in sorted(set(direct) | set(gateway)):
        d = direct.get(testId, missing)
        g = gateway.get(testId, missing)
        if d.outcome != g.outcome:
            differences.append(Difference(testId, d.outcome, g.outcome, g.message or d.message))
    return differences


# -- the list of expected differences ----------------------------------------

@attr.s(frozen=True)
class ExpectedDifference:
    """
    One documented difference (a C{[[difference]]} table of expected.toml).

    @ivar suite: the suite's name.
    @ivar paths: the gateway paths it applies to.
    @ivar test: a test id, or an C{fnmatch} pattern of test ids.
    @ivar direct: the outcomes the direct run may have (all, if empty).
    @ivar gateway: the outcomes the gateway run may have (all, if empty).
    @ivar why: the explanation printed beside it.
    """

    suite = attr.ib()
    paths = attr.ib()
    test = attr.ib()
    direct = attr.ib()
    gateway = attr.ib()
    why = attr.ib()

    def matches(self, suite, path, difference):
        return (suite == self.suite and path in self.paths
                and fnmatch.fnmatchcase(difference.test, self.test)
                and (not self.direct or difference.direct in self.direct)
                and (not self.gateway or difference.gateway in self.gateway))


class ExpectedListError(Exception):
    """
    expected.toml is malformed (the message names the entry and the key).
    """


_KEYS = {"suite", "paths", "test", "direct", "gateway", "why"}


def _outcomeList(entry, key, where):
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or any(v not in OUTCOMES for v in value):
        raise ExpectedListError(f"{where}: key {key!r}: must be one or a list of {', '.join(OUTCOMES)}")
    return tuple(value)


def parseExpected(text, source="expected.toml"):
    """
    Read the list of expected differences.

    @return: a L{list} of L{ExpectedDifference}.
    @raise ExpectedListError: for TOML that does not parse, an unknown or
        missing key, a wrong type, an unknown outcome, or an entry without
        a C{why}.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ExpectedListError(f"{source}: not valid TOML ({e})") from None
    unknown = set(data) - {"difference"}
    if unknown:
        raise ExpectedListError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; only [[difference]] tables")
    entries = []
    for number, entry in enumerate(data.get("difference", []), 1):
        where = f"{source}: [[difference]] #{number}"
        extra = set(entry) - _KEYS
        if extra:
            raise ExpectedListError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        for key in ("suite", "test", "why"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ExpectedListError(f"{where}: key {key!r}: is required (a non-empty string)")
        paths = entry.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ExpectedListError(f"{where}: key 'paths': is required (a list of gateway path names)")
        entries.append(ExpectedDifference(
            suite=entry["suite"], paths=tuple(paths), test=entry["test"],
            direct=_outcomeList(entry, "direct", where), gateway=_outcomeList(entry, "gateway", where),
            why=" ".join(entry["why"].split())))
    return entries


def explain(expected, suite, path, difference):
    """
    @return: the first L{ExpectedDifference} that covers C{difference}, or
        L{None}.
    """
    for entry in expected:
        if entry.matches(suite, path, difference):
            return entry
    return None


# -- the report ---------------------------------------------------------------

@attr.s
class Run:
    """
    One suite run on one path.

    @ivar status: C{"ok"}, C{"timed out after N s"}, or what went wrong.
    @ivar results: L{parseJUnit} results (empty when none were written).
    """

    suite = attr.ib()
    path = attr.ib()
    status = attr.ib()
    results = attr.ib(factory=dict)
    seconds = attr.ib(default=0.0)
    exitCode = attr.ib(default=None)
    log = attr.ib(default="")


def cell(text):
    """
    Text made safe for one Markdown table cell.
    """
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def analyse(runs, expected):
    """
    Compare every gateway run with its suite's direct run.

    @return: L{dict} of C{(suite, path)} to a list of
        C{(Difference, ExpectedDifference or None)}; the direct runs and
        runs without a direct run to compare with are left out.
    """
    direct = {run.suite: run for run in runs if run.path == "direct"}
    out = {}
    for run in runs:
        if run.path == "direct" or run.suite not in direct:
            continue
        out[(run.suite, run.path)] = [(d, explain(expected, run.suite, run.path, d))
                                     for d in compare(direct[run.suite].results, run.results)]
    return out


def unusedExpected(expected, analysis):
    """
    @return: the expected differences no run showed (among the suites and
        paths that ran): candidates to remove from the list.
    """
    used = {id(entry) for pairs in analysis.values() for _, entry in pairs if entry is not None}
    ran = set(analysis)
    return [entry for entry in expected
            if id(entry) not in used and any((entry.suite, p) in ran for p in entry.paths)]


def summaryRows(runs, analysis):
    direct = {run.suite: run for run in runs if run.path == "direct"}
    rows = []
    for run in runs:
        c = counts(run.results)
        if run.path == "direct":
            notRun = vs = "—"
        elif (run.suite, run.path) in analysis:
            notRun = sum(1 for test in direct[run.suite].results if test not in run.results)
            pairs = analysis[(run.suite, run.path)]
            unexpected = sum(1 for _, entry in pairs if entry is None)
            vs = f"{len(pairs) - unexpected} expected, {unexpected} unexpected" if pairs else "identical"
        else:
            notRun, vs = "?", "no direct run"
        rows.append([run.suite, run.path, c[PASS], c[FAIL], c[SKIP], notRun, vs, f"{run.seconds:.0f} s", run.status])
    return rows


SUMMARY_HEADER = ["suite", "path", "pass", "fail", "skip", "not run", "differences from direct", "time", "run"]


def render(runs, expected, meta):
    """
    The Markdown report.

    @param meta: L{list} of C{(label, value)} lines for its head.
    """
    analysis = analyse(runs, expected)
    lines = ["# Peer test suites through the gateway", ""]
    lines += [f"- {label}: {value}" for label, value in meta]
    lines += ["", "## Summary", ""]
    lines += table(SUMMARY_HEADER, summaryRows(runs, analysis))
    lines += ["", "`not run`: a test the direct run reported and this run did not (its file stopped before it, "
              "or the run was cut off).", ""]
    lines += ["## Differences from the direct run", ""]
    anything = False
    for (suite, path), pairs in analysis.items():
        if not pairs:
            continue
        anything = True
        lines += [f"### {suite} — {path}", ""]
        rows = []
        notes = []
        for difference, entry in pairs:
            if entry is not None:
                # One explanation is often shared by many tests: numbered
                # once below the table.
                if entry not in notes:
                    notes.append(entry)
                explanation = f"expected ({notes.index(entry) + 1})"
            else:
                explanation = "UNEXPECTED" + (f": {difference.message}" if difference.message else "")
            rows.append([difference.test, difference.direct, difference.gateway, explanation])
        lines += table(["test", "direct", "gateway", "explanation"], rows)
        lines.append("")
        lines += [f"{number}. {entry.why}" for number, entry in enumerate(notes, 1)]
        if notes:
            lines.append("")
    if not anything:
        lines += ["None: every suite had the same outcome for every test on every path.", ""]
    unused = unusedExpected(expected, analysis)
    if unused:
        lines += ["## Expected differences not seen in this run", ""]
        lines += table(["suite", "paths", "test", "why"],
                       [[e.suite, ", ".join(e.paths), e.test, e.why] for e in unused])
        lines.append("")
    failing = [(run, test, result) for run in runs if run.path == "direct"
               for test, result in run.results.items() if result.outcome == FAIL]
    if failing:
        lines += ["## Tests that fail directly too", "",
                  "Not the gateway's doing (the suite's environment: no internet, RabbitMQ's version...); "
                  "compared like every other test.", ""]
        lines += table(["suite", "test", "message"], [[run.suite, test, r.message] for run, test, r in failing])
        lines.append("")
    return "\n".join(lines)
