"""
kaazing-promo: an AMQP 0-9-1 gateway (WebSocket and TCP) that authenticates the
person behind a connection and promotes that identity into the AMQP handshake.
"""

__version__ = "0.1.0"
