"""Library code of the LR/BS ratio study pipeline.

Every rule in ``rules/`` is a thin wrapper around a function in this package; the
modules are importable and tested directly by pytest.
"""

__version__ = "0.1.0"
