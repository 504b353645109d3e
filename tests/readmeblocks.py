"""
The README's shell blocks and the markers that say whether a test runs
each one.
"""

import os
import re

from tests import ROOT

README = os.path.join(ROOT, "README.md")
#: The sections whose shell blocks a newcomer runs (title prefixes).
SECTIONS = ("Quick start", "Running it", "Promotion modes", "Operations")


class Block:
    """
    One shell block of the README and what its marker says.

    @ivar section: the title of its C{##} section.
    @ivar line: its first line's number in the README.
    @ivar text: the commands.
    @ivar run: whether the test runs it.
    @ivar reason: why not (skipped blocks).
    @ivar output: the regular expression its output must match, or L{None}.
    @ivar client: the connection_name of the AMQP client to hold open while
        it runs, or L{None}.
    """

    def __init__(self, section, line, text, marker):
        self.section, self.line, self.text = section, line, text
        self.run, self.reason, self.output, self.client = False, None, None, None
        if marker is None:
            raise ValueError(f"README.md line {line} ({section}): a sh block without a "
                             "<!-- readme-test: … --> marker above it")
        if marker.startswith("skip:"):
            self.reason = marker[len("skip:"):].strip()
            if not self.reason:
                raise ValueError(f"README.md line {line}: skip without a reason")
            return
        head, _, self.output = marker.partition("; output: ")
        self.output = self.output or None
        fields = [field.strip() for field in head.split(";")]
        if fields[0] != "run":
            raise ValueError(f"README.md line {line}: marker {marker!r} is neither run nor skip")
        self.run = True
        for field in fields[1:]:
            key, _, value = field.partition(": ")
            if key != "client" or not value:
                raise ValueError(f"README.md line {line}: unknown marker field {field!r}")
            self.client = value


def readmeBlocks(text):
    """
    @return: the L{Block}s of the shell blocks in L{SECTIONS}.
    @raise ValueError: a block has no marker, or a malformed one.
    """
    blocks = []
    section = None
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            title = line[3:].strip()
            section = title if title.startswith(SECTIONS) else None
        elif line.startswith("```") and section is not None:
            end = lines.index("```", index + 1)
            if line == "```sh":
                previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
                found = re.fullmatch(r"<!--\s*readme-test:\s*(.*?)\s*-->", previous.strip())
                blocks.append(Block(section, index + 2, "\n".join(lines[index + 1:end]) + "\n",
                                    found.group(1) if found else None))
            index = end
        index += 1
    return blocks
