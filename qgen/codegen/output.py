"""Writing generated modules to disk (all or nothing) and compiling them in memory."""

from __future__ import annotations

import errno
import fcntl
import linecache
import os
import re
import secrets
import types
from pathlib import Path
from typing import NoReturn

from qgen.codegen.plan import MAX_LAYER_TERMS
from qgen.codegen.rendering import render, render_module
from qgen.errors import OutputError
from qgen.solver.cost import check_budget
from qgen.spec import Spec, load_spec

__all__ = ["build", "compile_spec"]


def _as_spec(spec: Spec | str | os.PathLike) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def build(
    spec: Spec | str | os.PathLike,
    out_dir: str | os.PathLike = "generated",
    tests: bool = False,
    budget: int | float | None = None,
    max_terms: int = MAX_LAYER_TERMS,
) -> list[Path]:
    """Write ``<name>.py`` (and ``test_<name>.py`` with ``tests``) into ``out_dir``.

    All or nothing: the destination is checked before any work (a folder or a place where
    one can be made; targets that are not read-only files or folders), everything is
    rendered before anything is written, each file is written unnamed (``O_TMPFILE``, so a
    failure or a kill leaves nothing behind) and then renamed over its target, and with
    ``tests`` a failure on the second file puts the first one back as it was. Builds into
    one folder take turns (a lock on the folder), so concurrent builds never mix their
    files. Files get the mode the umask gives. Any problem is an :class:`OutputError`
    naming the folder and what to do.

    A layer over ``budget`` parameters per channel pair (default
    :data:`qgen.solver.cost.DEFAULT_BUDGET`) is refused first (:class:`BudgetError`: the
    cost and the options), and nothing is written; so is a layer past ``max_terms`` basis
    terms (0: no bound).
    """
    spec = _as_spec(spec)
    check_budget(spec, budget)
    out = Path(out_dir)
    names = [f"{spec.name}.py"] + ([f"test_{spec.name}.py"] if tests else [])
    try:
        _check_destination(out, names)
    except OSError as exc:  # a path the system refuses to look at (too long, a loop)
        raise _output_error(out, exc) from None
    # everything is rendered (and refused) before anything is written
    rendered = render(spec, max_terms)
    files = {names[0]: rendered.module}
    if tests:
        files[names[1]] = rendered.tests
    made = [p for p in (out, *out.parents) if not os.path.lexists(p)]
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _output_error(out, exc) from None
        return _write_all(out, files)
    except BaseException:
        for folder in made:  # the folders this build made, innermost first, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _output_error(out: Path, exc: OSError, target: Path | None = None) -> OutputError:
    place = f"-o {out}" if target is None else str(target)
    hint = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "over the disk quota",
        errno.EROFS: "the filesystem is read-only; choose another folder with -o",
        errno.EACCES: "no permission to write there; choose another folder with -o",
        errno.EPERM: "no permission to write there; choose another folder with -o",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another -o",
        errno.EEXIST: "it exists and is not a folder; choose another -o",
        errno.EISDIR: "it is a folder; move it away to build",
    }.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"cannot write {place}: {hint}; nothing was written")


def _check_destination(out: Path, names: list[str]) -> None:
    """Refuse, before any work, a destination the files cannot be written to."""

    def refuse(problem: str) -> NoReturn:
        raise OutputError(f"cannot write -o {out}: {problem}; nothing was written")

    if "\0" in str(out):
        refuse("the path has a NUL character")
    existing = out
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing.is_symlink() and not existing.exists():
        refuse(
            f"{existing} is a symbolic link to {os.readlink(existing)}, which does not exist; "
            "create that folder or choose another -o"
        )
    if os.path.lexists(existing) and not existing.is_dir():
        what = "a file" if existing.is_file() else "not a folder (a device or other special file)"
        if existing == out:
            refuse(f"it is {what}; name a folder (it is created when missing)")
        refuse(f"{existing} is {what}, so no folder can be made under it; choose another -o")
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            refuse("the filesystem is read-only; choose another folder with -o")
    except OSError:
        pass
    if not os.access(existing, os.W_OK | os.X_OK):
        refuse(f"no permission to write in {existing}; choose another folder with -o")
    for name in names:
        target = out / name
        if target.is_symlink():
            continue  # the link itself is replaced; what it points to is left alone
        if target.is_dir():
            raise OutputError(
                f"cannot write {target}: it is a folder; move it away to build; nothing was written"
            )
        if target.exists() and not target.stat().st_mode & 0o222:
            raise OutputError(
                f"cannot write {target}: the file is read-only; make it writable "
                f"(chmod u+w) or remove it to rebuild; nothing was written"
            )


def _write_all(out: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` into the folder ``out``, all or nothing (see :func:`build`)."""
    try:
        folder = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise _output_error(out, exc) from None
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # concurrent builds into out take turns
        except OSError:
            pass  # a filesystem without locks: builds are still each all or nothing
        else:
            _remove_leftovers(folder, list(files))
        staged: list[tuple[Path, int | Path]] = []
        try:
            for name, text in files.items():
                staged.append((out / name, _stage(out, name, text.encode("utf-8"))))
            _commit(out, folder, staged)
        except OSError as exc:
            raise _output_error(out, exc) from None
        finally:
            for _, handle in staged:
                if isinstance(handle, int):
                    os.close(handle)
                elif os.path.lexists(handle):
                    os.unlink(handle)
    finally:
        os.close(folder)
    return [target for target, _ in staged]


def _remove_leftovers(folder: int, names: list[str]) -> None:
    """Hidden files of a build of these targets killed in its last milliseconds (between
    naming a file and renaming it): builds name files only while they hold the folder's
    lock, so under the lock any such file is a leftover."""
    pattern = re.compile(
        "(?:" + "|".join(rf"\.{re.escape(n)}\.[0-9a-f]{{12}}\.(?:tmp|bak)" for n in names) + r")\Z"
    )
    for entry in os.listdir(folder):
        if pattern.match(entry):
            try:
                os.unlink(entry, dir_fd=folder)
            except OSError:
                pass


def _stage(out: Path, name: str, data: bytes) -> int | Path:
    """``data`` in an unnamed file in ``out`` (its descriptor), or, where the filesystem
    has no unnamed files, in a hidden temporary one (its path)."""
    fd = None
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(out, os.O_TMPFILE | os.O_WRONLY, 0o666)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    if fd is not None:
        try:
            _write_fd(fd, data)
        except BaseException:
            os.close(fd)
            raise
        return fd
    path = out / f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _write_named(fd, data)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return path


def _write_fd(fd: int, data: bytes) -> None:
    """All of ``data`` into the unnamed file ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_named(fd: int, data: bytes) -> None:
    """All of ``data`` into the named temporary file ``fd``."""
    _write_fd(fd, data)


def _commit(out: Path, folder: int, staged: list[tuple[Path, int | Path]]) -> None:
    """Rename every staged file over its target; if one fails, put back the targets
    already replaced (from hard links taken before) and re-raise."""
    backups: list[tuple[Path, bool, Path | None]] = []  # target, existed, its hard link
    try:
        for target, handle in staged:
            backup = None
            existed = os.path.lexists(target)
            if len(staged) > 1 and target.is_file() and not target.is_symlink():
                backup = out / f".{target.name}.{secrets.token_hex(6)}.bak"
                try:
                    os.link(target, backup)
                except OSError:
                    backup = None  # no hard links here: no way back for this file
            backups.append((target, existed, backup))
            if isinstance(handle, int):
                # linkat(AT_SYMLINK_FOLLOW) of the unnamed file (the dir fd makes Python
                # call linkat), then at once renamed over the target
                tmp = f".{target.name}.{secrets.token_hex(6)}.tmp"
                os.link(f"/proc/self/fd/{handle}", tmp, dst_dir_fd=folder, follow_symlinks=True)
                try:
                    os.replace(tmp, target.name, src_dir_fd=folder, dst_dir_fd=folder)
                except BaseException:
                    os.unlink(tmp, dir_fd=folder)
                    raise
            else:
                os.replace(handle, target)
    except BaseException:
        for target, existed, backup in reversed(backups[:-1]):  # the last one failed
            if backup is not None:
                os.replace(backup, target)
            elif not existed and os.path.lexists(target):
                os.unlink(target)
        raise
    finally:
        for _, _, backup in backups:
            if backup is not None and os.path.lexists(backup):
                os.unlink(backup)


def compile_spec(
    spec: Spec | str | os.PathLike,
    budget: int | float | None = None,
    max_terms: int = MAX_LAYER_TERMS,
) -> types.ModuleType:
    """The generated module for ``spec``, built in memory (no file is written); refused
    over ``budget`` parameters per channel pair as :func:`build` refuses it.

    The source is registered with :mod:`linecache` so tracebacks show the generated code.
    """
    spec = _as_spec(spec)
    check_budget(spec, budget)
    source = render_module(spec, max_terms)
    filename = f"<qgen:{spec.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(spec.name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own output
    module.__source__ = source
    return module
