"""Can the user FLARE runs as change what a site should only read: ``startup/``, ``local/``, the data?

A job runs with the rights of the FLARE process. Whatever that user can write, a job that finds a
way to write files can change: the site's keys and start scripts (``startup/``), its policies,
allow-list, limits and site code (``local/``, ``local/custom`` is on FLARE's import path), its
patients' data. So these stay read-only to that user, while the kit folder itself (FLARE's
workspace: logs, job folders) stays writable (docs/deployment.md, "Run FLARE as an unprivileged
user").

The rule implemented here (POSIX permission bits, what the kernel checks):

1. a path on a file system mounted read-only is not writable;
2. root can write everything: a check run as root (FLARE running as root) gets one warning;
3. otherwise the *owner* bits apply when the user owns the path, else the *group* bits when the
   path's group is one of the user's groups, else the *other* bits: writable when that class has
   ``w``; for the user running the check, ``os.access`` also counts (it sees ACLs);
4. a folder can be *replaced* (renamed away, a new one put in its place) when its parent folder is
   writable, unless the parent has the sticky bit and neither the parent nor the folder belongs to
   the user (the kit folder FLARE writes in must be ``root:<group> 1770`` for that reason).

Not considered: ACLs when checking another user (``--user``), capabilities, SELinux/AppArmor.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fedhealth.data.site_data import resolve_data_root

SHOWN = 3  # writable paths named per folder (startup/ and local/ hold the kit's own file names)
DOC = "docs/deployment.md, 'Run FLARE as an unprivileged user'"


@dataclass(frozen=True)
class Identity:
    """A user as the permission check sees it: uid, all its groups, and whether it runs this check."""

    name: str
    uid: int
    gids: frozenset[int]
    current: bool = False

    @classmethod
    def running(cls) -> Identity:
        """The user running this check (FLARE's user when the check runs as that user)."""
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, frozenset({os.getegid(), *os.getgroups()}), current=True)

    @classmethod
    def named(cls, user: str) -> Identity:
        """Another user (``--user``): its primary group and every group that lists it.

        Raises:
            ValueError: no such user.
        """
        try:
            entry = pwd.getpwnam(user)
        except KeyError as exc:
            raise ValueError(f"no user named {user!r} on this host") from exc
        groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
        return cls(user, entry.pw_uid, frozenset({entry.pw_gid, *groups}))

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def writable(path: Path, who: Identity) -> bool:
    """Whether ``who`` may write ``path`` (rules 1-3 of the module docstring)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return False
    if _read_only_fs(path):
        return False
    if who.is_root:
        return True
    if st.st_uid == who.uid:
        allowed = bool(st.st_mode & stat.S_IWUSR)
    elif st.st_gid in who.gids:
        allowed = bool(st.st_mode & stat.S_IWGRP)
    else:
        allowed = bool(st.st_mode & stat.S_IWOTH)
    return allowed or (who.current and os.access(path, os.W_OK))


def replaceable(folder: Path, who: Identity) -> bool:
    """Whether ``who`` may rename ``folder`` away and put another in its place (rule 4)."""
    folder = Path(folder).absolute()
    parent = folder.parent
    if not writable(parent, who):
        return False
    if who.is_root:
        return True
    parent_st, folder_st = parent.stat(), folder.lstat()
    sticky = bool(parent_st.st_mode & stat.S_ISVTX)
    return not sticky or who.uid in (parent_st.st_uid, folder_st.st_uid)


def _entries(top: Path) -> Iterator[Path]:
    """``top`` and everything under it (symbolic links to folders are not followed)."""
    yield top
    for root, dirs, files in os.walk(top):
        for name in sorted(dirs) + sorted(files):
            yield Path(root) / name


def read_only_areas(kit: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """``(label, folder)`` of what must stay read-only in a site kit, and notes on what is missing.

    The data folder is the site's own ``data_root`` (``local/fedhealth_site.json``), else
    ``<kit>/data``.
    """
    kit = Path(kit)
    areas: list[tuple[str, Path]] = [("startup/", kit / "startup"), ("local/", kit / "local")]
    notes: list[str] = []
    try:
        data = resolve_data_root(kit)
    except ValueError as exc:
        return areas, [f"cannot tell the data folder: {exc}"]
    if data.is_dir():
        areas.append((f"the data folder ({data})", data))
    else:
        notes.append(f"the data folder ({data}) does not exist yet; check it again once the data is there")
    return areas, notes


def permission_warnings(kit: Path, who: Identity | None = None) -> list[str]:
    """One warning per read-only area that ``who`` (default: the user running this) could change."""
    who = who or Identity.running()
    if who.is_root:
        return [
            f"the check runs as root ({who.name}): if FLARE runs as root, a job can change startup/, "
            f"local/ and the data; run FLARE as an unprivileged user ({DOC}), and run this check as "
            "that user or with --user <that user>"
        ]
    areas, warnings = read_only_areas(kit)
    fix = "sudo chown -R root:<FLARE's group> {path} && sudo chmod -R u=rwX,g=rX,o= {path}"
    for label, top in areas:
        is_data = label.startswith("the data folder")
        found = [p for p in _entries(top) if writable(p, who)]
        if found:
            if is_data:  # a hospital's file names may carry identifiers: counts only
                n_dirs = sum(p.is_dir() for p in found)
                what = f"{n_dirs} folder(s) and {len(found) - n_dirs} file(s)"
            else:
                names = [str(p.relative_to(kit)) + ("/" if p.is_dir() else "") for p in found]
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                what = ", ".join(names[:SHOWN]) + more
            warnings.append(
                f"{label} is writable by user {who.name!r}, the user FLARE runs as ({what}); a job could "
                f"change it. Make it read-only to that user: {fix.format(path=top)}"
            )
        if replaceable(top, who):
            parent = top.absolute().parent
            warnings.append(
                f"{label} can be renamed away and replaced by user {who.name!r}: its parent folder "
                f"{parent} is writable to it without the sticky bit. Make the parent not writable to that "
                f"user or, for the kit folder FLARE writes in, root-owned with the sticky bit: "
                f"sudo chown root:<FLARE's group> {parent} && sudo chmod 1770 {parent}"
            )
    return warnings
