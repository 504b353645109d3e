"""
The peer-suite harness (interop/run): see harness.py.  A developer tool, not part of the package.
"""
