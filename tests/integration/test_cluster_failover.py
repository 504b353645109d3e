"""
Issue 20 #4, failover under load: bench/failover.py's short timeline, run
by the suite.  Three RabbitMQ nodes in a cluster with quorum queues, two
gateways with [cluster] behind HAProxy; pika over the AMQP listener and
@cloudamqp/amqp-client over WebSocket publish with confirms and consume
while one gateway is killed with SIGKILL and then the queues' leader node
is stopped: no confirmed message may be lost, and every client is back
within a few seconds.  About 70 s; everything it starts is stopped.
"""

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests import ROOT


#: Seconds a client may take to be back (its own backoff is 1 s).
RECONNECT_LIMIT = 5.0


class FailoverTests(SynchronousTestCase):

    def test_20_4_failoverUnderLoad(self):
        if not os.path.isdir(os.path.join(ROOT, "bench", "node_modules", "@cloudamqp")):
            self.fail("bench/node_modules is missing (npm ci --prefix bench; ./dev test does it)")
        output = os.path.abspath(self.mktemp())
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "failover.py"), "--quick", "--results", "",
             "--json", output], capture_output=True, text=True, timeout=400, cwd=ROOT)
        self.assertTrue(os.path.exists(output), result.stdout[-3000:] + result.stderr[-3000:])
        with open(output) as f:
            document = json.load(f)
        for clients in ("pika_tcp", "amqp_client_ws"):
            figures = document[clients]
            self.assertGreater(figures["confirmed"], 100, (clients, figures))
            self.assertEqual(figures["lost"], 0, (clients, figures))
            # The gateway's death and the node's stop each reached some client.
            self.assertGreaterEqual(figures["reconnects"], 2, (clients, figures))
            self.assertLess(figures["reconnect_max_s"], RECONNECT_LIMIT, (clients, figures))
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
