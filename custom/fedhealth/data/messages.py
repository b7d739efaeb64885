"""Messages that may leave a site: what is wrong and where, never a patient value or a hospital's file name.

A site's start-up failure travels in the ``fedhealth_error`` reply header to the server and into the
run record that the job's submitter downloads; an ERROR log line may be streamed to the server. So
what the kit says about a site's data follows two rules:

1. **The kit's own messages** (:class:`SiteDataError` and its subclasses, and any exception that a
   ``raise`` statement in a ``fedhealth`` module raises) name what the kit itself defines: its file
   names (``heart_disease/train.csv``, ``labels.csv``), column and setting names, line numbers and
   counts. A value from a cell, a label, a DICOM attribute or a file name the hospital chose is
   never part of one. ``tests/unit/data/test_messages.py`` plants distinctive values in every error
   path of the site's loaders and checks that none comes back.
2. **Everything else** is reduced to its type by :func:`safe_reason`: an ``OSError`` carries the
   full path of the file it failed on, and pandas, numpy, pydicom, torch and Python's own
   conversions (``int("...")``) quote the value they could not use.
"""

from __future__ import annotations

import errno
import linecache
from collections.abc import Iterable
from pathlib import Path

KIT_PACKAGE = "fedhealth"


class SiteDataError(ValueError):
    """A site's data or settings cannot be used; the message names the file, column or line, never a value."""


def file_label(path: Path, *, kit_names: Iterable[str], kit_folders: Iterable[str], fallback: str) -> str:
    """How a message names a file: the kit's own name, or ``fallback`` for a name the hospital chose.

    A file the kit names itself (``train.csv``, ``labels.csv``) is shown with its folder when that
    folder is one the kit names too (``heart_disease/train.csv``, ``train/labels.csv``); any other
    file name may carry an identifier (``Doe_Jane_MRN0042.csv``) and is replaced by ``fallback``.
    """
    path = Path(path)
    if path.name not in set(kit_names):
        return fallback
    return f"{path.parent.name}/{path.name}" if path.parent.name in set(kit_folders) else path.name


def _raised_by_kit(exc: BaseException) -> bool:
    """Whether a ``raise`` statement in a fedhealth module raised ``exc`` (not a library or a conversion)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    if module != KIT_PACKAGE and not module.startswith(KIT_PACKAGE + "."):
        return False
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise ")


def safe_reason(exc: BaseException) -> str:
    """A reason for ``exc`` that may leave the site (rule 2 of the module docstring).

    Returns:
        ``str(exc)`` for the kit's own messages; for an ``OSError`` its type and error code without
        the path (``PermissionError (EACCES) on a file of this site's data, cache or run folder``);
        otherwise the exception's type with a note that the library's message is withheld.
    """
    if isinstance(exc, SiteDataError) or (not isinstance(exc, OSError) and _raised_by_kit(exc)):
        return str(exc)
    if isinstance(exc, OSError):
        code = errno.errorcode.get(exc.errno, "no error code") if exc.errno is not None else "no error code"
        return (
            f"{type(exc).__name__} ({code}) on a file of this site's data, cache or run folder "
            "(the path is not shown: a file name may identify a patient)"
        )
    return (
        f"{type(exc).__name__} while loading this site's data (the library's message is not shown: "
        "it may quote a value from the data)"
    )
