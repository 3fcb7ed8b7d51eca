"""slixmpp's integration tests (``itests/``), taken from its sdist on the package index.

The wheel has no ``itests/``; the source distribution of the installed
version has. :func:`itests` downloads that sdist once with pip (so pip's
configuration, index and proxies apply), extracts ``itests/`` into a cache
folder and lists the tests in it; later calls only read the cache. Nothing
of slixmpp is kept in this repository.

The cache is ``$XDG_CACHE_HOME/xmppd-tests`` (``~/.cache/xmppd-tests``), or
``tests/.cache`` when that cannot be created. Putting the sdist
(``slixmpp-VERSION.tar.gz``) there by hand works offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

RUNNER = Path(__file__).resolve().parent / "slixmpp_itests_runner.py"
TESTS = Path(__file__).resolve().parent.parent

#: Seconds pip may take to download the sdist (building its metadata included).
DOWNLOAD_TIME_LIMIT = 300


class Unavailable(Exception):
    """The itests cannot be had; str() says why, in one line."""


@dataclass(frozen=True)
class Itests:
    """An extracted ``itests/`` folder and the ids of the tests in it."""

    version: str
    folder: Path
    test_ids: tuple[str, ...]


def cache_folder() -> Path:
    """Where sdists and extracted itests are kept (created if need be)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (Path(base) / "xmppd-tests", TESTS / ".cache"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise Unavailable(f"no writable cache folder ({base}/xmppd-tests, {TESTS / '.cache'})")


def installed_version() -> str:
    """The version of the installed slixmpp."""
    try:
        return metadata.version("slixmpp")
    except metadata.PackageNotFoundError:
        raise Unavailable("slixmpp is not installed") from None


def itests() -> Itests:
    """The itests of the installed slixmpp version, downloaded on first use."""
    version = installed_version()
    cache = cache_folder()
    target = cache / f"slixmpp-{version}"
    listing = target / "tests.json"
    with _locked(cache / f"slixmpp-{version}.lock"):
        if not listing.exists():
            sdist = cache / f"slixmpp-{version}.tar.gz"
            if not sdist.exists():
                _download(version, sdist)
            _extract(sdist, version, target)
            listing.write_text(json.dumps(_list_tests(target / "itests")))
    return Itests(version, target / "itests", tuple(json.loads(listing.read_text())))


@contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (parallel test runs share the cache)."""
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(version: str, sdist: Path) -> None:
    print(f"fetching slixmpp {version}'s sdist with pip for its itests (into {sdist.parent})",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=sdist.parent) as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", "--disable-pip-version-check",
            "--timeout", "20", "--retries", "1", "--dest", scratch, f"slixmpp=={version}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=DOWNLOAD_TIME_LIMIT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(
                f"slixmpp's sdist could not be downloaded: pip took over {DOWNLOAD_TIME_LIMIT} s"
            ) from None
        found = sorted(Path(scratch).glob(f"slixmpp-{version}.tar.gz"))
        if done.returncode != 0 or not found:
            raise Unavailable(
                f"slixmpp's sdist could not be downloaded: {_last_error(done.stderr)}"
            )
        os.replace(found[0], sdist)


def _last_error(stderr: str) -> str:
    """The line of pip's output that says what went wrong, and why the index was not reached."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("WARNING: Location")]
    errors = [line for line in lines if line.startswith("ERROR")]
    message = (errors or lines or ["pip failed without a message"])[-1]
    cause = re.search(
        r"(\[Errno [^\]]+\][^'\")]*|Read timed out|Cannot connect to proxy|"
        r"CERTIFICATE_VERIFY_FAILED|HTTPError[^'\")]*)", stderr
    )
    if cause and cause.group(1) not in message:
        message += f" (the index could not be reached: {cause.group(1).strip()})"
    return message


def _extract(sdist: Path, version: str, target: Path) -> None:
    """Extract only ``itests/`` from the sdist into ``target``."""
    prefix = f"slixmpp-{version}/itests/"
    scratch = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise Unavailable(f"{sdist.name} holds no itests/ folder")
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(scratch, members=members, **kwargs)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch / f"slixmpp-{version}", target)
    except (OSError, tarfile.TarError) as e:
        raise Unavailable(f"{sdist.name} could not be extracted: {e}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _list_tests(folder: Path) -> list[str]:
    """The test ids of the itests, as the runner (and unittest) sees them."""
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--list", str(folder)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise Unavailable(f"listing slixmpp's itests failed: {_last_error(done.stderr)}")
    return done.stdout.split()
