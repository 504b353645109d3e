"""
Promotion without broker passwords (C{[promotion] mode = "token"}, X7):
single-use tokens the promoter mints (L{tokens}), the permission table
that follows the person's groups (L{permissions}), and the C{[broker_auth]}
server RabbitMQ's HTTP auth backend asks (L{brokerauth}).
"""
