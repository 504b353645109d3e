"""
Tests for L{kaazing_promo.auth.userscnf}: reading webMethods' users.cnf (U2).
"""

import builtins
import io
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.auth.userscnf import (
    UserEntry, UsersCnfError, parseUsersCnf, parseUsersCnfStream, renderUsersCnf)
from kaazing_promo.errors import ConfigError
from tests import ROOT
from tests.authfixtures import WEBMETHODS_HASH, standardUsers, testHash, writeUsersCnf

USER = 'javaclass="com.wm.app.b2b.server.User"'
GROUP = 'javaclass="com.wm.app.b2b.server.Group"'
VALUES = 'javaclass="com.wm.util.Values"'


def parseText(text):
    """
    Parse users.cnf text given as a L{str}.
    """
    return parseUsersCnfStream(io.BytesIO(text.encode("utf-8")), "users.cnf")


class RealShapeTests(SynchronousTestCase):
    """
    U2: files in the shape Integration Server 10.x writes.
    """

    def setUp(self):
        self.users, self.groups = standardUsers()
        self.path = writeUsersCnf(self.mktemp(), self.users, self.groups)

    def test_users(self):
        """
        U2: every user record becomes a L{UserEntry} with its hash, and the
        trailing allusers, adminUser and defUser entries are skipped.
        """
        parsed = parseUsersCnf(self.path)
        self.assertEqual(sorted(parsed.users),
                         ["alice", "disabled", "joe.smith", "nohash", "webm"])
        byName = {user.name: user for user in self.users}
        for name, entry in parsed.users.items():
            self.assertEqual(entry.passHash, byName[name].passHash)
            self.assertEqual(entry.enabled, byName[name].enabled)

    def test_disabledAndNullHash(self):
        """
        U2: C{enabled false} disables a user; C{<null name="passHash"/>}
        gives no hash.
        """
        parsed = parseUsersCnf(self.path)
        self.assertFalse(parsed.users["disabled"].enabled)
        self.assertTrue(parsed.users["alice"].enabled)
        self.assertIsNone(parsed.users["nohash"].passHash)

    def test_groupsMerged(self):
        """
        U2: a user's groups are its own C{members} plus every group record
        whose C{members} list the user.
        """
        parsed = parseUsersCnf(self.path)
        self.assertEqual(parsed.users["joe.smith"].groups, {"Everyone", "Tyche"})
        self.assertEqual(parsed.users["alice"].groups, {"Everyone"})

    def test_unsupportedFormats(self):
        """
        U2: users whose hash cannot be verified are listed by format.
        """
        parsed = parseUsersCnf(self.path)
        self.assertEqual(dict(parsed.unsupported), {"PBKDF2-HmacSHA256": ["webm"]})

    def test_membersAsArray(self):
        """
        U2: C{members} written as an C{<array>} of values reads the same as a
        record.
        """
        path = writeUsersCnf(self.mktemp(), self.users, self.groups, membersAsArray=True)
        self.assertIn(b'<array name="members"', open(path, "rb").read())
        self.assertEqual(parseUsersCnf(path), parseUsersCnf(self.path))

    def test_withoutIdrefs(self):
        """
        U2: the same users written without ids and idrefs read the same.
        """
        path = writeUsersCnf(self.mktemp(), self.users, self.groups, useIdrefs=False)
        self.assertNotIn(b"idref", open(path, "rb").read())
        self.assertIn(b"idref", open(self.path, "rb").read())
        self.assertEqual(parseUsersCnf(path), parseUsersCnf(self.path))

    def test_entryReprHidesHash(self):
        """
        U2: a L{UserEntry}'s repr never shows its hash.
        """
        entry = parseUsersCnf(self.path).users["alice"]
        self.assertNotIn(entry.passHash, repr(entry))
        self.assertNotIn("pbkdf2", repr(entry))

    def test_sample(self):
        """
        U2: the shipped sample has the demo users the README names, a
        disabled user, a user without a hash and an unsupported webMethods
        hash, and its packaged copy is identical.
        """
        sample = os.path.join(ROOT, "etc", "config", "users.cnf")
        packaged = os.path.join(ROOT, "kaazing_promo", "data", "config", "users.cnf")
        self.assertEqual(open(sample, "rb").read(), open(packaged, "rb").read())
        parsed = parseUsersCnf(sample)
        self.assertEqual(parsed.users["demo"].groups, {"Tyche", "Everyone"})
        self.assertEqual(parsed.users["joe.smith"].groups, {"Tyche"})
        self.assertEqual(parsed.users["alice"].groups, {"Everyone"})
        self.assertEqual(
            [name for name, entry in parsed.users.items() if not entry.enabled], ["Developer"])
        self.assertEqual(
            [name for name, entry in parsed.users.items() if entry.passHash is None], ["Default"])
        self.assertEqual(dict(parsed.unsupported), {"PBKDF2-HmacSHA256": ["Administrator"]})


class IdrefTests(SynchronousTestCase):
    """
    U2: any element may be an C{<object idref="N" name="…"/>} copy of an
    earlier element.
    """

    def test_idrefToUser(self):
        """
        U2: an idref to a user record is a copy of that user under the new
        name.
        """
        parsed = parseText(f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <record name="alice" {USER} id="7">
      <value name="name">alice</value>
      <value name="passHash">{testHash("pw")}</value>
      <value name="enabled">true</value>
    </record>
    <object idref="7" name="bob"/>
  </record>
</Values>""")
        self.assertEqual(sorted(parsed.users), ["alice", "bob"])
        self.assertEqual(parsed.users["bob"].passHash, parsed.users["alice"].passHash)

    def test_idrefToMembersAndValues(self):
        """
        U2: idrefs to a C{members} record, to an C{enabled} value and to a
        group member's name value resolve to what they point at.
        """
        parsed = parseText(f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <record name="alice" {USER}>
      <value name="name" id="1">alice</value>
      <value name="passHash">{testHash("a")}</value>
      <record name="members" {VALUES} id="2"><value name="Tyche">Tyche</value></record>
      <value name="enabled" id="3">false</value>
    </record>
    <record name="bob" {USER}>
      <value name="name">bob</value>
      <value name="passHash">{testHash("b")}</value>
      <object idref="2" name="members"/>
      <object idref="3" name="enabled"/>
    </record>
  </record>
  <record name="groups" {VALUES}>
    <record name="Ops" {GROUP}>
      <value name="name">Ops</value>
      <record name="members" {VALUES}><object idref="1" name="alice"/></record>
    </record>
  </record>
</Values>""")
        self.assertEqual(parsed.users["bob"].groups, {"Tyche"})
        self.assertFalse(parsed.users["bob"].enabled)
        self.assertEqual(parsed.users["alice"].groups, {"Tyche", "Ops"})

    def test_idrefToGroupRecordInMembers(self):
        """
        U2: a user's C{members} may hold idref copies of group records; each
        stands for the group's name.
        """
        parsed = parseText(f"""<Values version="2.0">
  <record name="groups" {VALUES}>
    <record name="Tyche" {GROUP} id="9"><value name="name">Tyche</value>
      <record name="members" {VALUES}/></record>
  </record>
  <record name="users" {VALUES}>
    <record name="alice" {USER}>
      <null name="passHash"/>
      <record name="members" {VALUES}><object idref="9" name="Tyche"/></record>
    </record>
  </record>
</Values>""")
        self.assertEqual(parsed.users["alice"].groups, {"Tyche"})

    def test_dangling(self):
        """
        U2: an idref to an id not seen before is a load error naming the line.
        """
        error = self.assertRaises(UsersCnfError, parseText, f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <record name="alice" {USER}>
      <object idref="42" name="members"/>
    </record>
  </record>
</Values>""")
        self.assertIn("line 4", str(error))
        self.assertIn("dangling", str(error))
        self.assertIn('"42"', str(error))

    def test_forwardReferenceIsDangling(self):
        """
        U2: an idref may only point backwards; a later id does not count.
        """
        error = self.assertRaises(UsersCnfError, parseText, f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <object idref="5" name="bob"/>
    <record name="alice" {USER} id="5"><null name="passHash"/></record>
  </record>
</Values>""")
        self.assertIn("line 3", str(error))

    def test_cyclic(self):
        """
        U2: an idref to an element that contains it is a load error naming
        the line.
        """
        error = self.assertRaises(UsersCnfError, parseText, f"""<Values version="2.0">
  <record name="users" {VALUES} id="1">
    <record name="alice" {USER} id="2">
      <null name="passHash"/>

      <object idref="1" name="members"/>
    </record>
  </record>
</Values>""")
        self.assertIn("line 6", str(error))
        self.assertIn("cyclic", str(error))

    def test_selfReference(self):
        """
        U2: an element that is its own idref is cyclic.
        """
        error = self.assertRaises(UsersCnfError, parseText, """<Values version="2.0">
  <object id="3" idref="3" name="users"/>
</Values>""")
        self.assertIn("line 2", str(error))
        self.assertIn("cyclic", str(error))

    def test_duplicateId(self):
        """
        U2: an id used twice is a load error: which one an idref means
        would be a guess.
        """
        error = self.assertRaises(UsersCnfError, parseText, f"""<Values version="2.0">
  <record name="users" {VALUES} id="1">
    <record name="alice" {USER} id="1"><null name="passHash"/></record>
  </record>
</Values>""")
        self.assertIn("line 3", str(error))


class MalformedTests(SynchronousTestCase):
    """
    U2: files that cannot be used fail the load with a message an operator
    can act on.
    """

    def test_malformedXML(self):
        """
        U2: broken XML is an error naming the file and the line where
        expat noticed (here the users record is never closed).
        """
        error = self.assertRaises(UsersCnfError, parseText, f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <record name="alice" {USER}>
  </record>
</Values>""")
        self.assertIn("users.cnf: line 5", str(error))
        self.assertIn("malformed XML", str(error))

    def test_doctypeRefused(self):
        """
        U2: a DOCTYPE (and so any entity declaration) is refused.
        """
        error = self.assertRaises(UsersCnfError, parseText, """<?xml version="1.0"?>
<!DOCTYPE Values [<!ENTITY a "aaaa">]>
<Values version="2.0"><record name="users">&a;</record></Values>""")
        self.assertIn("line 2", str(error))
        self.assertIn("DOCTYPE", str(error))

    def test_notUsersCnf(self):
        """
        U2: well-formed XML of another kind is refused.
        """
        self.assertRaises(UsersCnfError, parseText, "<config/>")
        self.assertRaises(UsersCnfError, parseText, '<Values version="2.0"/>')

    def test_missingFile(self):
        """
        U2: a file that cannot be read is a L{ConfigError} naming it.
        """
        path = self.mktemp()
        error = self.assertRaises(ConfigError, parseUsersCnf, path)
        self.assertIsInstance(error, UsersCnfError)
        self.assertIn(path, str(error))

    def test_strayEntriesSkipped(self):
        """
        U2: entries of the users and groups records that are not users or
        groups, and trailing root entries, are skipped; a user without an
        C{enabled} flag is enabled, any value but "true" disables.
        """
        parsed = parseText(f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <value name="stray">x</value>
    <record name="alice" {USER}><value name="passHash">{testHash("a")}</value></record>
    <record name="bob" {USER}><value name="passHash"> {testHash("b")}
    </value><value name="enabled">yes</value></record>
  </record>
  <record name="groups" {VALUES}><value name="stray">x</value></record>
  <array name="allusers" type="value" depth="1"><value>alice</value></array>
  <value name="adminUser">Administrator</value>
  <value name="defUser">Default</value>
</Values>""")
        self.assertEqual(sorted(parsed.users), ["alice", "bob"])
        self.assertTrue(parsed.users["alice"].enabled)
        self.assertFalse(parsed.users["bob"].enabled)
        self.assertTrue(parsed.users["bob"].passHash.startswith("{kaazing"))
        self.assertEqual(dict(parsed.unsupported), {})

    def test_emptyHashIsNoHash(self):
        """
        U2: an empty C{passHash} is no hash at all.
        """
        parsed = parseText(f"""<Values version="2.0">
  <record name="users" {VALUES}>
    <record name="alice" {USER}><value name="passHash"></value></record>
  </record>
</Values>""")
        self.assertIsNone(parsed.users["alice"].passHash)


class ReadOnlyTests(SynchronousTestCase):
    """
    U2: the gateway never writes users.cnf.
    """

    def test_openedReadOnly(self):
        """
        U2: the file is opened C{rb} and left as it was.
        """
        users, groups = standardUsers()
        path = writeUsersCnf(self.mktemp(), users, groups)
        before = os.stat(path)
        content = open(path, "rb").read()
        modes = []
        realOpen = builtins.open

        def spy(file, mode="r", *args, **kwargs):
            if file == path:
                modes.append(mode)
            return realOpen(file, mode, *args, **kwargs)

        self.patch(builtins, "open", spy)
        parseUsersCnf(path)
        self.assertEqual(modes, ["rb"])
        self.assertEqual(open(path, "rb").read(), content)
        self.assertEqual(os.stat(path).st_mtime_ns, before.st_mtime_ns)


names = st.text(
    st.characters(whitelist_categories=("L", "N", "Pc", "Pd", "So")), min_size=1, max_size=12)


class RoundTripTests(SynchronousTestCase):
    """
    U2: whatever the generator writes, the parser reads back.
    """

    @settings(max_examples=40, deadline=None)
    @given(st.dictionaries(
        names,
        st.tuples(st.sampled_from([None, WEBMETHODS_HASH, "{kaazing-pbkdf2-sha256}1$AAAAAAAAAAA=$" + "A" * 43 + "="]),
                  st.frozensets(names, max_size=3), st.booleans()),
        max_size=8),
        st.dictionaries(names, st.lists(names, max_size=4), max_size=3),
        st.booleans(), st.booleans())
    def test_roundTrip(self, users, groups, useIdrefs, membersAsArray):
        """
        U2: users, hashes, flags and merged groups survive a render and a
        parse, with or without idrefs.
        """
        entries = [UserEntry(name, passHash, ownGroups, enabled)
                   for name, (passHash, ownGroups, enabled) in users.items()]
        data = renderUsersCnf(entries, groups, useIdrefs=useIdrefs,
                              membersAsArray=membersAsArray)
        parsed = parseUsersCnfStream(io.BytesIO(data), "generated")
        expected = {}
        for entry in entries:
            memberOf = {group for group, members in groups.items() if entry.name in members}
            expected[entry.name] = UserEntry(
                entry.name, entry.passHash, entry.groups | memberOf, entry.enabled)
        self.assertEqual(dict(parsed.users), expected)
