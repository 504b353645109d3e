"""
AMQP 0-9-1 frames as a client or broker sends them during the handshake,
and a decoder of what a session wrote, for the in-memory session tests.
"""

import struct

from kaazing_promo.amqp.codec import FRAME_BODY, FRAME_HEADER, FRAME_METHOD, decodeMethod, encodeFrame, encodeMethod
from kaazing_promo.amqp.frames import FrameReader

BROKER_PROPERTIES = {"product": "RabbitMQ", "capabilities": {"publisher_confirms": True}}
CLIENT_PROPERTIES = {"product": "test-client", "capabilities": {"authentication_failure_close": True},
                     "connection_name": "caf\u00e9"}


def start(mechanisms=b"AMQPLAIN PLAIN"):
    return encodeMethod(0, "connection.start", version_major=0, version_minor=9,
                        server_properties=BROKER_PROPERTIES, mechanisms=mechanisms, locales=b"en_US")


def startOk(user="mallory", password="xyz", mechanism="PLAIN"):
    return encodeMethod(0, "connection.start-ok", client_properties=CLIENT_PROPERTIES, mechanism=mechanism,
                        response=b"\x00" + user.encode() + b"\x00" + password.encode(), locale="en_US")


TUNE = encodeMethod(0, "connection.tune", channel_max=2047, frame_max=131072, heartbeat=60)
TUNE_OK = encodeMethod(0, "connection.tune-ok", channel_max=2047, frame_max=131072, heartbeat=60)
OPEN = encodeMethod(0, "connection.open", virtual_host="/")
OPEN_OK = encodeMethod(0, "connection.open-ok")
UPDATE_SECRET = encodeMethod(0, "connection.update-secret", new_secret=b"stolen", reason="x")
UPDATE_SECRET_OK = encodeMethod(0, "connection.update-secret-ok")
PUBLISH = encodeMethod(1, "basic.publish", routing_key="q") + encodeFrame(FRAME_BODY, 1, b"hello")
CLOSE = encodeMethod(0, "connection.close", reply_code=200, reply_text="bye")
CLOSE_OK = encodeMethod(0, "connection.close-ok")


def content(channel, body):
    """
    One published message as a client sends it: basic.publish, a content
    header frame and a body frame.
    """
    header = struct.pack("!HHQH", 60, 0, len(body), 0)
    return (encodeMethod(channel, "basic.publish", routing_key="q") + encodeFrame(FRAME_HEADER, channel, header)
            + encodeFrame(FRAME_BODY, channel, body))


def methods(data):
    """
    Decode every frame in C{data} into (qualifiedName, args) pairs.
    """
    reader = FrameReader(1 << 20)
    result = []
    for frameType, channel, payload, raw in reader.feed(data):
        if frameType == FRAME_METHOD:
            method = decodeMethod(payload)
            result.append((method.qualifiedName, method.args))
        else:
            result.append((frameType, channel))
    return result

