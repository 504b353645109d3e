"""
Tests for the bench's own bookkeeping (bench/bench.py), where a wrong reading
would make a result look better than it is.
"""

import importlib.util
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.ops.metrics import GatewayMetrics
from tests import ROOT


def _bench(case):
    """
    @return: bench/bench.py as a module (it puts bench/ first on sys.path,
        put back afterwards).
    """
    path = list(sys.path)
    case.addCleanup(sys.path.__setitem__, slice(None), path)
    spec = importlib.util.spec_from_file_location("kaazing_bench", os.path.join(ROOT, "bench", "bench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class VerifyCacheCountsTests(SynchronousTestCase):

    def setUp(self):
        self.bench = _bench(self)

    def test_readFromTheGatewaysOwnPage(self):
        """
        The counts come from the page the gateway's metrics make, both
        series there at 0 from the start.
        """
        metrics = GatewayMetrics({}, realm="internal")
        self.assertEqual(self.bench.verifyCacheCounts(metrics.render().decode("utf-8")), {"hit": 0, "miss": 0})
        metrics.verifyCache(False)
        metrics.verifyCache(False)
        metrics.verifyCache(True)
        self.assertEqual(self.bench.verifyCacheCounts(metrics.render().decode("utf-8")), {"hit": 1, "miss": 2})

    def test_missingSeriesIsAnError(self):
        """
        A page without the counter (renamed, or another gateway) is an
        error, not "0 hashes".
        """
        error = self.assertRaises(RuntimeError, self.bench.verifyCacheCounts,
                                  'kaazing_promo_connections_open{listener="web"} 3.0\n')
        self.assertIn("kaazing_promo_verify_cache_total", str(error))
