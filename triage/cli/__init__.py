"""The ``triage`` command line: the command table and what its command groups share.

* :mod:`triage.cli.commands`: the command table (the ``triage`` Typer app);
* :mod:`triage.cli.keys`: ``triage api-keys``;
* :mod:`triage.cli.common`: the console, settings loading and errors they share.

The CLI is the outermost layer: it may import any module of ``triage`` (the composition at
the top of the package, :mod:`triage.jobs`, :mod:`triage.tools`), and only
``triage.__main__`` and the console script (``triage.cli:app``) import it.
"""

from triage.cli.commands import app

__all__ = ["app"]
