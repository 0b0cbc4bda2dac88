"""Files the plugin writes and checks: atomic writes, locks and content digests.

Atomic writes go to a temporary file in the target folder, are fsynced, then ``os.replace``d onto the target: a reader
never sees a half-written file; a failed write removes its temporary file, and a hard-killed writer (SIGKILL, power
loss) leaves at most a ``*.tmp-<pid>-<random>`` file behind, which nothing reads, and which the next write of the
same path removes once no process of that pid runs and it has not changed for :data:`STALE_WRITE_SECONDS` (the random
part keeps writers with the same pid apart: processes of two containers sharing a folder). A training checkpoint's is
removed sooner, by the next run or resume in its folder, once its run's name marker shows that run ended
(:mod:`recbole_hnlm.trainer`): a run resumed or started again under a new name never writes that path again.
"""
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, concurrent runs are not detected
    fcntl = None

from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, WriteError

__all__ = ["atomic_folder", "atomic_path", "check_writable", "discard_stale_work", "exclusive_lock", "file_sha256",
           "held_by_another", "is_safetensors_file", "lock_file", "lock_open_file", "pid_alive",
           "remove_dead_writers_files", "temporary_name", "unguarded_write_failure", "work_folder", "write_failed",
           "write_failure_errno", "write_json_atomic", "write_text_atomic", "STALE_WRITE_SECONDS"]

logger = logging.getLogger(__name__)
#: flock errors of file systems without locks (NFS without lockd, some FUSE and SMB mounts): work goes on unlocked.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def pid_alive(pid: int) -> bool:
    """Whether a process of ``pid`` may run on this machine: False only when it certainly does not. On Windows
    (where ``os.kill(pid, 0)`` would send Ctrl-C) and for pids the system cannot look up, True."""
    if os.name == "nt":
        return True
    if isinstance(pid, int) and pid <= 0:  # kill(0) and kill(-n) signal process groups: no process has such a pid
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # another user's live process, or no such pid number
        return True
    return True


def lock_open_file(handle, wait: bool = True) -> bool:
    """Take an exclusive ``flock`` on the open file ``handle`` (or file descriptor: a folder's), held until it is
    closed or its process ends, however it ends (``wait=True``: until no other process holds it); False where no lock
    can be taken (no ``fcntl``, a file system without locks) or, without ``wait``, another process holds it."""
    if fcntl is None:
        return False
    try:
        fd = handle if isinstance(handle, int) else handle.fileno()
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def held_by_another(path: str):
    """Whether another open file holds a ``flock`` on ``path`` (a live process, in whatever process-id namespace:
    another container sharing the folder); None where that cannot be told (no ``fcntl``, a file system without
    locks, the file gone)."""
    if fcntl is None:
        return None
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        return None
    with handle:
        granted = _reader_lock_granted(handle)
    return None if granted is None else not granted


def _reader_lock_granted(handle):
    """Whether a reader's lock on the open file ``handle`` is granted now (then released at once): False while a
    writer holds it, None where that cannot be told. A reader's lock needs no write access (NFSv4 wants it for
    LOCK_EX)."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        return False if error.errno in (errno.EAGAIN, errno.EACCES) else None
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


#: A temporary file whose writer's pid runs no process here is removed only once unchanged for this long: in another
#: container sharing the folder that pid means nothing here, and its writer may still be writing.
STALE_WRITE_SECONDS = 600


def temporary_name(path: str) -> str:
    """``<path>.tmp-<pid>-<random>``: the pid tells whether its writer may still run, the random part keeps apart
    writers of the same pid (two containers)."""
    return f"{os.fspath(path).rstrip(os.sep)}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def remove_dead_writers_files(path: str, ended_pid: Optional[int] = None) -> None:
    """Remove the ``<path>.tmp-<pid>[-<random>]`` files and folders of writers that no longer run (hard-killed during
    a write): no process of the pid runs, and nothing changed them for :data:`STALE_WRITE_SECONDS`. Those of live
    processes stay. ``ended_pid``: only the files of that pid, whose writer the caller knows ended (no process holds
    its run's lock, so it runs in no other container either), whatever their age."""
    path = os.fspath(path)
    folder, prefix = os.path.dirname(os.path.abspath(path)), os.path.basename(path.rstrip(os.sep)) + ".tmp-"
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if not (name.startswith(prefix) and pid.isdigit()):
            continue
        full = os.path.join(folder, name)
        if ended_pid is not None:
            if int(pid) != ended_pid:
                continue
        elif int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        else:
            try:
                if time.time() - os.lstat(full).st_mtime < STALE_WRITE_SECONDS:
                    continue
            except OSError:
                continue
        _remove_entry(full)


#: What a write that failed on each cause needs before the command can run again.
_WRITE_FAILURES = {errno.ENOSPC: "free space on its disk", errno.EDQUOT: "free space within the disk quota",
                   errno.EFBIG: "raise the file-size limit (ulimit -f)", errno.EIO: "check its disk",
                   errno.EROFS: "make its folder writable (its file system is read-only)"}


def write_failed(path: str, error: BaseException, kept: bool = True) -> WriteError:
    """:class:`WriteError` naming ``path`` for ``error``, a write that failed on one of the causes of
    :data:`_WRITE_FAILURES` (safetensors says which only as ``os error N``, and names no file)."""
    code = write_failure_errno(error) or getattr(error, "errno", None)
    why = os.strerror(code) if code else str(error)
    failure = WriteError(f"{path}: cannot be written ({why}); "
                         + ("its earlier version, if any, is unchanged" if kept else
                            "the records were not added, the earlier ones are unchanged")
                         + f". {_capitalized(_WRITE_FAILURES.get(code, 'fix the cause'))} and run the command again")
    failure.errno, failure.filename = code, path
    return failure


def unguarded_write_failure(error: BaseException, unnamed: str) -> Optional[WriteError]:
    """:func:`write_failed` for ``error``, a write no atomic write guards that failed on one of the causes of
    :data:`_WRITE_FAILURES` (RecBole's tensorboard events on a full disk), naming its file, or ``unnamed`` where the
    error names none; None for any other error."""
    if not write_failure_errno(error):
        return None
    return write_failed(getattr(error, "filename", None) or unnamed, error)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _about(error: BaseException, *paths: str) -> bool:
    """Whether ``error`` is about one of ``paths`` or names no file (a ``write()`` that failed; safetensors' errors):
    an error reading another file inside an atomic write (a checkpoint copied from a failing disk) is not the
    target's write failure. ``shutil.copyfile`` names its source first and its target second whichever of them
    failed: an I/O error that names another file first may be that file's disk, and is not claimed."""
    named = [getattr(error, "filename", None), getattr(error, "filename2", None)]
    if named[0] is None or named[0] in paths:
        return True
    return named[1] in paths and getattr(error, "errno", None) != errno.EIO


def write_failure_errno(error: BaseException) -> Optional[int]:
    """The errno of :data:`_WRITE_FAILURES` that ``error`` carries (an ``OSError``, or safetensors' error whose
    message ends in ``(os error N)``), else None: other errors (a missing input file, a refused lock) pass on as
    they are."""
    if isinstance(error, WriteError):
        return None
    if isinstance(error, OSError):
        code = error.errno
    elif type(error).__name__ == "SafetensorError":
        found = re.search(r"\(os error (\d+)\)", str(error))
        code = int(found.group(1)) if found else None
    else:
        return None
    return code if code in _WRITE_FAILURES else None


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path`` (same file system). A symbolic
    link at ``path`` is replaced, not followed (a run resumed from a folder of links to another run's files must not
    write into them); callers that mean the link's target resolve it first."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_dead_writers_files(path)
    tmp = temporary_name(path)
    try:
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # writers such as safetensors create 0600 files; users share results
            os.replace(tmp, path)
        except Exception as error:
            if write_failure_errno(error) and _about(error, tmp, path):
                raise write_failed(path, error) from error
            _name_the_target(error, tmp, path)
            raise
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        except OSError:  # a file system remounted read-only after an I/O error: the error above is the one to say
            logger.warning("%s: could not be removed", tmp)


def _name_the_target(error: BaseException, tmp: str, path: str) -> None:
    """Raise ``error`` again naming ``path`` where it names ``tmp``, the temporary name an atomic write removes (a
    folder where the file goes, an unwritable folder): the message must name the file the user can act on."""
    if isinstance(error, OSError) and error.errno is not None and tmp in (error.filename, error.filename2):
        first, second = (path if name == tmp else name for name in (error.filename, error.filename2))
        raise OSError(error.errno, error.strerror, first, None,  # a copy's source stays named
                      None if second == first else second) from error


@contextmanager
def atomic_folder(path: str):
    """Yield a temporary folder next to ``path``; on success its files are fsynced and given the permissions of
    :func:`atomic_path`, and it replaces ``path`` (an earlier folder, or a link to one, is moved aside to a
    ``.tmp-`` name first and removed once the new one is in place; a failed rename puts it back; a hard kill between
    the two leaves no folder, never a mixed one, and a later write removes the moved-aside one). On failure the
    temporary folder is removed."""
    remove_dead_writers_files(path)
    tmp = temporary_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    old = None
    try:
        try:
            yield tmp
            for name in os.listdir(tmp):
                full = os.path.join(tmp, name)
                if os.path.isfile(full):
                    with open(full, "rb") as handle:
                        os.fsync(handle.fileno())
                    os.chmod(full, 0o666 & ~_umask())  # safetensors and peft write 0600 files; users share results
            if os.path.isdir(path):  # moved aside, not removed: a failed rename below puts it back
                old = temporary_name(path)
                os.replace(path, old)
            os.replace(tmp, path)
        except BaseException as error:  # Ctrl-C between the two renames too
            if old is not None and not os.path.lexists(path):
                try:
                    os.replace(old, path)
                except OSError:  # the earlier folder stays under its .tmp- name, never removed below
                    logger.error("%s: the earlier folder could not be put back; it is kept as %s", path, old)
                old = None
            if isinstance(error, Exception) and write_failure_errno(error):
                raise write_failed(path, error) from error
            _name_the_target(error, tmp, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            _remove_entry(old)


def _remove_entry(path: str) -> None:
    """Remove the folder ``path`` with its files, or the file or link ``path`` itself (``shutil.rmtree`` refuses
    links); best effort, as the folder's ``rmtree(ignore_errors=True)``: what cannot be removed stays."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_json_atomic(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def lock_file(path: str) -> str:
    """The file :func:`exclusive_lock` takes to guard the writing of ``path`` (a file or a folder)."""
    return path.rstrip(os.sep) + ".lock"


def check_writable(path: str, option: str) -> None:
    """Raise :class:`ConfigError` naming ``option`` when ``path`` cannot be written (its nearest existing folder is
    read-only): before the hours of work whose result would be written there, not after them."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        if os.path.exists(folder):
            raise ConfigError(f"{option}: {path} cannot be written ({folder} is a file, not a folder)")
        folder = os.path.dirname(folder)
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option}: {path} cannot be written ({folder} is read-only); give a path in a writable "
                          "folder")


def work_folder(artifact: str) -> str:
    """The folder beside ``artifact`` where an unfinished computation of it keeps what it resumes from (chunks, a
    resume state); it is guarded by ``lock_file(work_folder(artifact))``."""
    return artifact.rstrip(os.sep) + ".work"


def discard_stale_work(artifact: str) -> None:
    """Remove the work folder beside a finished ``artifact`` that is reused (a store that is a cache hit, a teacher
    file, an adapter): the chunks or resume state of the run that wrote the artifact and was stopped before it removed
    them (a full dataset's chunks take hundreds of MB). Only when nothing in it is newer than the artifact: a later run
    of other settings, stopped on the way, keeps its folder to resume from; so does a run working in it now (locked)."""
    work = work_folder(artifact)
    if not os.path.isdir(work):
        return
    written = os.path.getmtime(artifact)
    for folder, _, names in os.walk(work):
        if any(_changed_after(os.path.join(folder, name), written) for name in names):
            return
    try:
        with exclusive_lock(lock_file(work), f"the work folder {work}"):
            shutil.rmtree(work, ignore_errors=True)
    except ConcurrentWriterError:
        return
    except OSError as error:  # a read-only folder: tidying up is optional, the artifact is still used
        logger.info("%s: left in place (%s)", work, error.strerror or error)
        return
    logger.info("%s: removed (left beside %s by the run that wrote it)", work, artifact)


def _changed_after(path: str, when: float) -> bool:
    """Whether ``path`` (a link itself, not its target: a dangling link is a file too) changed after ``when``; a
    file removed meanwhile (another run tidying the same folder) did not."""
    try:
        return os.lstat(path).st_mtime > when
    except FileNotFoundError:
        return False


@contextmanager
def exclusive_lock(path: str, what: str, wait: bool = False, shared: bool = False):
    """Hold an advisory lock (``flock``) on the file ``path`` (created, kept afterwards) for the ``with`` block.

    The operating system releases it when its holder exits, however it exits, so a killed run leaves no stale lock.
    ``wait=False`` raises :class:`ConcurrentWriterError` naming ``what`` and the holder's pid when another process
    (or another ``with`` block of this one) holds it; ``wait=True`` blocks until it is free. ``shared=True`` takes a
    reader's lock: any number of readers hold it together, and none while a writer holds it (nor a writer while they
    do). On a file system without locks the block runs unlocked, after a warning."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        if error.errno == errno.EROFS or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            # a read-only folder: nobody writes what the lock guards there either (a reused adapter is only read)
            logger.info("%s: no lock taken (%s); nothing in its folder can be written", path, error.strerror)
            yield
            return
        handle = open(path, encoding="utf-8")  # another user's lock file in a shared folder: flock takes it too
    try:
        if fcntl is None:
            _warn_no_fcntl_once(what)
        elif _flock(handle, path, what, wait, shared) and handle.writable() and not shared:  # readers write no pid
            handle.seek(0)
            handle.truncate()
            try:  # unbuffered: a pid that could not be written is not written again when the handle closes
                os.write(handle.fileno(), f"{os.getpid()}\n".encode())
            except OSError as error:  # a full disk: the lock holds without its pid, and the work's own writes
                if not write_failure_errno(error):  # name the file and the cause
                    raise
        yield
    finally:
        handle.close()  # releases the lock


_warned_no_fcntl = []


def _warn_no_fcntl_once(what: str) -> None:
    """Where Python has no ``fcntl`` (Windows), say once per process that no lock guards the files."""
    if not _warned_no_fcntl:
        _warned_no_fcntl.append(True)
        logger.warning("this platform has no advisory file locks (no fcntl module): a second run writing %s (or "
                       "any other artifact) at the same time would not be detected", what)


_WARNED_NO_LOCKS = set()


def _flock(handle, path: str, what: str, wait: bool, shared: bool = False) -> bool:
    """Lock ``handle`` for :func:`exclusive_lock`; False (after a warning) where the file system takes no locks."""
    try:
        fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError as error:
        if error.errno in _NO_LOCKS:
            folder = os.path.dirname(os.path.abspath(path))
            if folder not in _WARNED_NO_LOCKS:  # once per folder: a grid takes a lock per cell
                _WARNED_NO_LOCKS.add(folder)
                logger.warning("%s: the file system takes no locks (%s); a second run writing %s at the same time "
                               "would not be detected", path, error.strerror, what)
            return False
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
    if not shared and _reader_lock_granted(handle):  # readers hold it: the pid in the file is an earlier writer's
        raise ConcurrentWriterError(f"{path}: other processes are reading {what} (readers record no pid); wait for "
                                    "them to finish, or give this run files of its own")
    handle.seek(0)
    holder = handle.read().strip() or "unknown"
    raise ConcurrentWriterError(f"{path}: another process (pid {holder}) is writing {what}; wait for it to finish, or "
                                "give this run files of its own")


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_safetensors_file(path: str) -> bool:
    """Whether ``path`` starts like a safetensors file (an 8-byte header length, then a JSON object), complete or not:
    an artifact path naming another kind of file (a data file, a typo) must not be written over."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= 1 << 30 and head[8:9] == b"{"
