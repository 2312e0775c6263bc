"""Thin scripts run by Snakemake's ``script:`` directive.

Each one only unpacks the ``snakemake`` object and calls one library function. Snakemake
sets ``__file__`` to the real path of the script, so ``_bootstrap`` can put the repository
root on ``sys.path`` even where the package is not installed (e.g. a ``--sdm conda`` env).
"""
