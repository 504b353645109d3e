"""
The only places that touch a library's private names: one module per
library, each with L{check} for the test that fails clearly when an
upgrade removes one.
"""
