"""
Plugins for kaazing-promo: modules here (or in any C{kaazing_promo.plugins}
package on C{sys.path}) providing L{kaazing_promo.interfaces.IPromoterFactory}
are found with L{twisted.plugin.getPlugins}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = []
