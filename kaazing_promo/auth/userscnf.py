"""
webMethods Integration Server's C{users.cnf}, read-only (U2).

The file is IData XML::

    <Values version="2.0">
      <record name="users" javaclass="com.wm.util.Values">
        <record name="joe" javaclass="com.wm.app.b2b.server.User" id="3">
          <value name="name">joe</value>
          <value name="pass">…placeholder…</value>
          <value name="passHash">{kaazing-pbkdf2-sha256}…</value>   (or <null name="passHash"/>)
          <record name="members" javaclass="com.wm.util.Values">     (or <array name="members" …>)
            <value name="Everybody">Everybody</value>
          </record>
          <value name="enabled">true</value>
        </record>
      </record>
      <record name="groups" javaclass="com.wm.util.Values">
        <record name="Tyche" javaclass="com.wm.app.b2b.server.Group">
          <value name="name">Tyche</value>
          <record name="members" javaclass="com.wm.util.Values">…user names…</record>
        </record>
      </record>
      …allusers, adminUser, defUser…
    </Values>

Any element may carry C{id="N"}, and any element may be written as
C{<object idref="N" name="…"/>}: a copy of the earlier element N under the
new name.  The parser is a streaming C{pyexpat} one (ElementTree takes
seconds for 100,000 users): it builds plain Python values as elements close,
remembers those that carry an id, and resolves each idref to the value
already built.
"""

import io
import types
from collections import Counter, defaultdict
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

import attr

from kaazing_promo.auth import passhash
from kaazing_promo.errors import ConfigError

USER_CLASS = "com.wm.app.b2b.server.User"
GROUP_CLASS = "com.wm.app.b2b.server.Group"
VALUES_CLASS = "com.wm.util.Values"


class UsersCnfError(ConfigError):
    """
    A users.cnf cannot be used.  The message names the file and, for a
    syntax or idref error, the line; it never quotes a hash.
    """


@attr.s(frozen=True, slots=True)
class UserEntry:
    """
    One user of a users.cnf.

    @ivar name: the login name (L{str}).
    @ivar passHash: the C{passHash} value (L{str}), or L{None} when the file
        has none.  Left out of C{repr}.
    @ivar groups: L{frozenset} of group names: the user's own C{members}
        and every group whose C{members} list the user.
    @ivar enabled: L{bool}.
    """

    name = attr.ib()
    passHash = attr.ib(repr=False)
    groups = attr.ib(converter=frozenset, default=frozenset())
    enabled = attr.ib(default=True)


def _hashSummary(entries):
    """
    @param entries: iterable of L{UserEntry}.
    @return: C{(unsupported, iterations)}: a L{dict} mapping a format name
        to the L{list} of names of the users whose hash is in that format
        and cannot be verified, and a L{Counter} of the iteration counts of
        the hashes that can.
    """
    unsupported = defaultdict(list)
    iterations = Counter()
    for entry in entries:
        if entry.passHash is None:
            continue
        cost = passhash.iterationsOf(entry.passHash)
        if cost is not None:
            iterations[cost] += 1
            continue
        name = passhash.hashFormat(entry.passHash)
        if name == passhash.FORMAT:
            name += " (malformed)"
        unsupported[name].append(entry.name)
    return dict(unsupported), iterations


@attr.s(frozen=True, slots=True)
class UsersCnf:
    """
    What a users.cnf says.

    @ivar users: read-only mapping of user name to L{UserEntry}.
    @ivar unsupported: read-only mapping of hash format name to the list of
        users whose hash is in that format (they cannot log in).
    @ivar iterations: read-only mapping of a PBKDF2 iteration count to how
        many users' supported hashes have it.
    """

    users = attr.ib(repr=lambda users: f"<{len(users)} users>")
    unsupported = attr.ib()
    iterations = attr.ib(repr=False)

    @classmethod
    def fromEntries(cls, entries):
        """
        @param entries: iterable of L{UserEntry}.
        @return: a L{UsersCnf} holding them.
        """
        users = {entry.name: entry for entry in entries}
        unsupported, iterations = _hashSummary(users.values())
        return cls(users=types.MappingProxyType(users),
                   unsupported=types.MappingProxyType(unsupported),
                   iterations=types.MappingProxyType(iterations))

    def withOverlay(self, hashes):
        """
        @param hashes: mapping of user name to a hash that wins over the
            file's C{passHash}; names the file does not know are ignored.
        @return: a new L{UsersCnf}.
        """
        return self.fromEntries(
            attr.evolve(entry, passHash=hashes[name]) if name in hashes else entry
            for name, entry in self.users.items())


class _Record(dict):
    """
    An IData record as the parser builds it: a L{dict} of its entries plus
    the record's C{javaclass} (L{None} when the element had none).
    """

    __slots__ = ("javaclass",)


_MISSING = object()
_PENDING = object()  # an id whose element has opened and not yet closed
_RECORDS = frozenset({"Values", "record"})
_ARRAYS = frozenset({"array", "list"})
_REF = "\0idref"


def _readIData(stream, label):
    """
    Parse IData XML into plain values: C{<value>} and other leaves become
    L{str}, C{<null>} L{None}, C{<record>} and C{<Values>} L{_Record}, C{<array>}
    and C{<list>} L{tuple}; idrefs are resolved to the value built earlier.

    @param stream: a binary file object.
    @param label: the file's name for messages.
    @return: the root value.
    @raise UsersCnfError: malformed XML, a DOCTYPE, a dangling, cyclic or
        duplicate id.
    """
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = 1 << 17
    ids = {}
    chars = []
    # One frame per open element: (tag, name, id, container, value).  The
    # container is a _Record or a list collecting the children of a record
    # or an array, None for a leaf (whose element children are ignored);
    # value is preset only for an idref element.
    stack = []
    roots = []

    def fail(message):
        raise UsersCnfError(f"{label}: line {parser.CurrentLineNumber}: {message}")

    def start(tag, attrs):
        chars.clear()
        elementId = attrs.get("id")
        idref = attrs.get("idref")
        if elementId is not None:
            if elementId in ids:
                fail(f'id "{elementId}" is used twice')
            ids[elementId] = _PENDING
        if idref is not None:
            value = ids.get(idref, _MISSING)
            if value is _MISSING:
                fail(f'idref "{idref}" names no earlier element (dangling idref)')
            if value is _PENDING:
                fail(f'idref "{idref}" names an element that contains it (cyclic idref)')
            stack.append((_REF, attrs.get("name"), elementId, None, value))
        elif tag in _RECORDS:
            container = _Record()
            container.javaclass = attrs.get("javaclass")
            stack.append((tag, attrs.get("name"), elementId, container, None))
        elif tag in _ARRAYS:
            stack.append((tag, attrs.get("name"), elementId, [], None))
        else:
            stack.append((tag, attrs.get("name"), elementId, None, None))

    def end(_):
        tag, name, elementId, container, value = stack.pop()
        if container is not None:
            value = container if type(container) is _Record else tuple(container)
        elif tag is _REF:
            pass
        elif tag == "null":
            value = None
        else:
            value = "".join(chars)
        if elementId is not None:
            ids[elementId] = value
        if not stack:
            roots.append((tag, value))
            return
        parent = stack[-1][3]
        if type(parent) is _Record:
            parent[name] = value
        elif parent is not None:
            parent.append(value)

    def doctype(*_):
        # Integration Server writes none; a DTD could only declare entities.
        fail("a DOCTYPE is not allowed in users.cnf")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars.append
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.ParseFile(stream)
    except expat.ExpatError as e:
        raise UsersCnfError(
            f"{label}: line {e.lineno}: malformed XML: {expat.ErrorString(e.code)}") from None
    tag, root = roots[0]
    if tag != "Values" or not isinstance(root, _Record):
        raise UsersCnfError(
            f"{label}: the root element is <{tag}>, not <Values>: not a users.cnf")
    return root


def _isA(value, javaclass, marker):
    """
    @return: whether C{value} is a record of C{javaclass} (or a record with
        no javaclass that has the key C{marker}).
    """
    return isinstance(value, _Record) and (
        value.javaclass == javaclass or (value.javaclass is None and marker in value))


def _memberNames(members):
    """
    The names in a C{members} entry.

    A record lists names as its values (C{<value name="Tyche">Tyche</value>})
    or as entries whose key is the name (C{<null name="Tyche"/>}, or an
    idref copy of a group or user record); an array lists them as its values.
    A member that is itself a user or group record stands for its C{name}.

    @return: L{frozenset} of L{str}.
    """
    if isinstance(members, str):
        pairs = [(None, members)]
    elif isinstance(members, _Record):
        pairs = members.items()
    elif isinstance(members, tuple):
        pairs = [(None, member) for member in members]
    else:
        return frozenset()
    names = set()
    for key, value in pairs:
        if isinstance(value, _Record) and isinstance(value.get("name"), str):
            value = value["name"]
        if isinstance(value, str) and value.strip():
            names.add(value.strip())
        elif key:
            names.add(key)
    return frozenset(names)


def _interpret(root, label):
    """
    @param root: the L{_Record} L{_readIData} returned.
    @return: the L{UsersCnf} it describes.
    """
    users = root.get("users")
    if not isinstance(users, _Record):
        raise UsersCnfError(f'{label}: no <record name="users">: not a users.cnf')
    # idrefs make many users share one members record: read each once.  The
    # ids stay valid because root keeps every record alive.
    namesOf = {}

    def memberNames(members):
        names = namesOf.get(id(members))
        if names is None:
            names = namesOf[id(members)] = _memberNames(members)
        return names

    groupsOf = defaultdict(set)
    groups = root.get("groups")
    if isinstance(groups, _Record):
        for key, group in groups.items():
            if not _isA(group, GROUP_CLASS, "members"):
                continue
            groupName = group.get("name")
            if not isinstance(groupName, str):
                groupName = key
            for member in memberNames(group.get("members")):
                groupsOf[member].add(groupName)

    def entries():
        # Entries of the users record that are not user records (a stray
        # value, an allusers list) are skipped.  A user's name is its key,
        # which for an idref copy is the copy's own name.
        for key, record in users.items():
            if not _isA(record, USER_CLASS, "passHash"):
                continue
            name = key if key else record.get("name")
            if not isinstance(name, str):
                continue
            hashValue = record.get("passHash")
            hashValue = hashValue.strip() if isinstance(hashValue, str) else None
            # Integration Server treats a user without the flag as enabled;
            # any value other than "true" disables.
            enabled = record.get("enabled", "true")
            userGroups = memberNames(record.get("members"))
            if name in groupsOf:
                userGroups = userGroups.union(groupsOf[name])
            yield UserEntry(
                name=name,
                passHash=hashValue or None,
                groups=userGroups,
                enabled=isinstance(enabled, str) and enabled.strip().lower() == "true")

    return UsersCnf.fromEntries(entries())


def parseUsersCnfStream(stream, label):
    """
    Parse a users.cnf from an open binary file.

    @param stream: a binary file object, read to its end.
    @param label: how messages name the file.
    @return: a L{UsersCnf}.
    @raise UsersCnfError: the file is malformed, has a dangling or cyclic
        idref, or is not a users.cnf.
    """
    return _interpret(_readIData(stream, label), label)


def parseUsersCnf(path):
    """
    Parse the users.cnf at C{path}, opened read-only: the gateway never
    writes it.

    @return: a L{UsersCnf}.
    @raise UsersCnfError: it cannot be read or used.
    """
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise UsersCnfError(f"{path}: cannot read users.cnf: {e.strerror}") from None
    with stream:
        return parseUsersCnfStream(stream, path)


def renderUsersCnf(users, groups, useIdrefs=True, membersAsArray=False):
    """
    Write a users.cnf in Integration Server's shape, for tests, benchmarks
    and the sample.

    With C{useIdrefs}, elements carry ids and repeats are written as
    C{<object idref>}s the way Integration Server does: the C{pass}
    placeholder and the C{enabled} values after their first use, a user's
    C{members} record when an earlier user has the same one, and each name
    in a group's C{members} (pointing at that user's C{name} value); the
    trailing C{allusers} array points at every user record.

    @param users: iterable of L{UserEntry} (C{groups} being the user's own
        C{members}).
    @param groups: mapping of group name to an iterable of member user names.
    @param membersAsArray: write users' C{members} as C{<array>}s of values
        instead of records.
    @return: the file's bytes (UTF-8).
    """
    out = io.StringIO()
    write = out.write
    nextId = iter(range(1, 1 << 62)).__next__
    seen = {}  # (kind, key) -> id of the earlier element

    def idAttr(key):
        if not useIdrefs:
            return ""
        seen[key] = newId = nextId()
        return f' id="{newId}"'

    def element(indent, key, name, text):
        if useIdrefs and key in seen:
            write(f'{indent}<object idref="{seen[key]}" name={quoteattr(name)}/>\n')
        else:
            write(f'{indent}<value name={quoteattr(name)}{idAttr(key)}>{escape(text)}</value>\n')

    write('<?xml version="1.0" encoding="UTF-8"?>\n\n<Values version="2.0">\n')
    write(f'  <record name="users" javaclass="{VALUES_CLASS}"{idAttr(("users",))}>\n')
    userIds = []
    for user in users:
        write(f'    <record name={quoteattr(user.name)} javaclass="{USER_CLASS}"{idAttr(("user", user.name))}>\n')
        userIds.append(seen.get(("user", user.name)))
        write(f'      <value name="name"{idAttr(("name", user.name))}>{escape(user.name)}</value>\n')
        element("      ", ("value", "pass"), "pass", "$iss.passman$")
        if user.passHash is None:
            write('      <null name="passHash"/>\n')
        else:
            write(f'      <value name="passHash">{escape(user.passHash)}</value>\n')
        memberKey = ("members", tuple(sorted(user.groups)))
        if useIdrefs and memberKey in seen:
            write(f'      <object idref="{seen[memberKey]}" name="members"/>\n')
        elif membersAsArray:
            write(f'      <array name="members" type="value" depth="1"{idAttr(memberKey)}>\n')
            for group in memberKey[1]:
                write(f'        <value>{escape(group)}</value>\n')
            write('      </array>\n')
        else:
            write(f'      <record name="members" javaclass="{VALUES_CLASS}"{idAttr(memberKey)}>\n')
            for group in memberKey[1]:
                write(f'        <value name={quoteattr(group)}>{escape(group)}</value>\n')
            write('      </record>\n')
        element("      ", ("value", str(user.enabled).lower()), "enabled", str(user.enabled).lower())
        write('    </record>\n')
    write('  </record>\n')
    write(f'  <record name="groups" javaclass="{VALUES_CLASS}">\n')
    for group, members in groups.items():
        write(f'    <record name={quoteattr(group)} javaclass="{GROUP_CLASS}"{idAttr(("group", group))}>\n')
        write(f'      <value name="name">{escape(group)}</value>\n')
        write(f'      <record name="members" javaclass="{VALUES_CLASS}">\n')
        for member in members:
            element("        ", ("name", member), member, member)
        write('      </record>\n')
        write('    </record>\n')
    write('  </record>\n')
    if useIdrefs:
        write('  <array name="allusers" type="record" depth="1">\n')
        for userId in userIds:
            write(f'    <object idref="{userId}"/>\n')
        write('  </array>\n')
    write('  <value name="adminUser">Administrator</value>\n')
    write('  <value name="defUser">Default</value>\n')
    write('</Values>\n')
    return out.getvalue().encode("utf-8")
