"""
Processes and ports for the integration tests: the venv's twistd, copies of
etc/ on free ports, and one way to wait until something is true.
"""

import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
import tomllib

from twisted.internet import defer, task

from tests import ROOT

ETC = os.path.join(ROOT, "etc")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
POLL_INTERVAL = 0.1


def freePort():
    """
    @return: a TCP port free on 127.0.0.1 right now.
    """
    [port] = freePorts(1)
    return port


def freePorts(count):
    """
    @return: C{count} distinct TCP ports free on 127.0.0.1 right now.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@defer.inlineCallbacks
def waitFor(reactor, predicate, timeout=10.0, interval=POLL_INTERVAL):
    """
    Poll C{predicate} (which may return a L{Deferred}) every C{interval}
    seconds until it is true.

    @return: a L{Deferred} firing with C{True}, or with C{False} after C{timeout}.
    """
    deadline = reactor.seconds() + timeout
    while not (yield defer.maybeDeferred(predicate)):
        if reactor.seconds() > deadline:
            return False
        yield task.deferLater(reactor, interval, lambda: None)
    return True


def waitForStart(port, process, timeout=30.0):
    """
    Connect to the AMQP listener, send the protocol header and read the
    first frame.

    @return: the method frame's payload (class and method ids first).
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"twistd exited with {process.returncode} before listening")
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with connection:
        connection.sendall(AMQP_HEADER)
        data = b""
        while len(data) < 7 or len(data) < 8 + int.from_bytes(data[3:7], "big"):
            chunk = connection.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {data!r}")
            data += chunk
    frameType, channel, size = data[0], int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:7], "big")
    assert (frameType, channel) == (1, 0), data[:7]
    assert data[7 + size] == 0xCE, "frame-end octet"
    return data[7:7 + size]


def instance(configName):
    """
    A copy of etc/ in a fresh directory, its listener ports in
    C{configName} moved to free ones.

    @return: C{(directory, config path, {listener name: port})}.
    """
    directory = tempfile.mkdtemp(prefix="kaazing-promo-etc-")
    shutil.copytree(ETC, directory, dirs_exist_ok=True)
    path = os.path.join(directory, configName)
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    ports = {}
    for listener in tomllib.loads(text)["listeners"]:
        endpoint = listener["endpoint"]
        if endpoint.startswith("tcp:"):
            [old] = [part for part in endpoint.split(":") if part.startswith("port=")]
            ports[listener["name"]] = port = freePort()
            text = text.replace(endpoint, endpoint.replace(old, f"port={port}"))
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
    return directory, path, ports


def unitEnvironment():
    """
    Roughly what systemd gives a service: a fixed PATH and nothing of ours.
    """
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def readUnit(path):
    """
    Parse a systemd unit file (systemd.syntax(7)): sections, C{Key=value}
    lines, comments and backslash continuations.

    @return: a L{list} of C{(section, key, value)} in file order (keys may
        repeat; an empty value resets a list-valued key).
    """
    entries = []
    section = None
    pending = ""
    with open(path, encoding="utf-8") as stream:
        for raw in stream:
            line = raw.rstrip("\n")
            if not pending and line.lstrip().startswith(("#", ";")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line, pending = (pending + line).strip(), ""
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
    return entries


def directive(paths, section, key):
    """
    @return: the values of C{key} in C{section}, read across a unit and its
        drop-ins in order, honouring an empty assignment as a reset.
    """
    values = []
    for path in paths:
        for entrySection, entryKey, value in readUnit(path):
            if (entrySection, entryKey) == (section, key):
                values = [] if value == "" else values + [value]
    return values


def execStart(paths):
    """
    @return: the argv of the one ExecStart= the unit (with drop-ins) runs.
    """
    [command] = directive(paths, "Service", "ExecStart")
    # No prefix (-, @, +, !, :), specifier or variable: nothing to expand.
    assert command[0] not in "-@+!:", command
    assert "%" not in command and "$" not in command, command
    return shlex.split(command)
