"""
Log capture for tests, and the forged text a hostile client sends to
write lines of the log itself.
"""

from twisted.logger import formatEvent, formatEventAsClassicLogText, globalLogPublisher

#: A user name that, written raw, would end the line, turn the terminal red
#: and write a second, successful-looking login line.
FORGED_USER = "mallory\r\n\x1b[31mlogin ok: listener=amqp source=10.9.9.9:1 gateway_user=admin broker_user=guest"
FORGED_VHOST = "/\nconnection open: gateway_user=admin\x1b[0m"


def captureEvents(testCase, publisher=globalLogPublisher):
    """
    @return: a list that receives every log event until the test ends.
    """
    events = []
    publisher.addObserver(events.append)
    testCase.addCleanup(publisher.removeObserver, events.append)
    return events


def assertOneSafeLine(testCase, event):
    """
    C{event}, as twistd writes it, is one line with no control character.

    @return: that line.
    """
    line = formatEventAsClassicLogText(event)
    testCase.assertEqual(line.count("\n"), 1, line)
    testCase.assertTrue(line.endswith("\n"), line)
    testCase.assertTrue(line[:-1].isprintable(), line)
    return line


def capturedTexts(testCase):
    """
    @return: a list that collects the text of every log event until the test ends.
    """
    texts = []

    def observe(event):
        texts.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return texts
