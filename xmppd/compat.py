"""Compatibility shim that lets wokkel 18.0.0 import on current Twisted.

wokkel 18.0.0 (the last release) imports two names that current Twisted no
longer has:

* ``twisted.python.constants``: Twisted's constants module moved out into
  the ``constantly`` package, which exposes the same classes
  (``Values``, ``ValueConstant``, ``Names``, ...).
* ``twisted.python.compat._PY3``: a flag from the Python 2 era; on the
  Pythons we support it is always true.

:func:`install` provides both before anything imports wokkel. It is called
from :mod:`xmppd` itself, so importing any xmppd module is enough. Nothing
else in the code base patches third-party modules: keep it that way.
"""

import sys

import constantly
from twisted.python import compat as _twisted_compat


def install() -> None:
    """Provide the Twisted names wokkel 18.0.0 expects; safe to call twice."""
    if "twisted.python.constants" not in sys.modules:
        try:
            import twisted.python.constants  # noqa: F401  (an older Twisted has it)
        except ImportError:
            sys.modules["twisted.python.constants"] = constantly
            import twisted.python

            twisted.python.constants = constantly
    if not hasattr(_twisted_compat, "_PY3"):
        _twisted_compat._PY3 = True


install()
