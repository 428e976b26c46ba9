"""What a notebook's import cell calls once: IPython's autoreload, so edits to lib/ apply without a restart.

Papermill, nbval and plain Python (a notebook exported as a script) do not need it; there it does nothing.
"""

from __future__ import annotations


def autoreload() -> bool:
    """Turn on `%autoreload 2` in a running IPython shell (every module is reloaded before a cell when its file
    changed); returns whether it did (False outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.run_line_magic("load_ext", "autoreload")
    shell.run_line_magic("autoreload", "2")
    return True
