"""A throw-away PostgreSQL cluster for tests that take the database away.

Tests of what happens when PostgreSQL restarts, crashes or hangs cannot use the shared
server the suite runs on. :class:`PgCluster` makes a private one: ``initdb`` into a
temporary directory, ``postgres`` on a free loopback port with durability off and small
settings, and the operations a chaos test needs::

    with throwaway_cluster() as pg:          # skips unless this is a PostgreSQL run
        env = {"SIMTOPUP_DATABASE_URL": pg.url}
        ...
        pg.stop("fast")                      # smart | fast | immediate, as pg_ctl -m
        pg.start()                           # same port, same data; waits until it accepts
        pg.restart("fast", down_seconds=3)   # stop, stay down a while, start
        pg.kill()                            # SIGKILL the postmaster (a crash); start() recovers
        pg.freeze(5)                         # SIGSTOP every process of the cluster, SIGCONT after 5 s
        pg.freeze(5, wait=False)             # ... without blocking the caller; pg.thaw() ends it early

``url`` is ``postgresql://postgres@127.0.0.1:<port>/<dbname>`` (trust authentication, no
password); ``admin_url`` names the ``postgres`` database. The database ``dbname`` is
created at the first start.

initdb and postgres refuse to run as root. As root (CI), they run as the ``postgres`` OS
user (``subprocess`` switches user and group itself; the temporary directory is handed to
that user); otherwise as the current user.

Clean-up: :meth:`PgCluster.destroy` (called by the context manager, and at interpreter exit
for a cluster still up) stops the server immediately, kills whatever of it is left and
removes the directory — also when the test failed. If the test process itself is killed,
the postmaster gets SIGQUIT (its parent-death signal, set with ``setpriv --pdeathsig`` when
the cluster is started from the main thread), so no server outlives the run; only the
directory (``/tmp/pgcluster-*``) is left behind then.

Skips: on a run that is not on PostgreSQL (``SIMTOPUP_DATABASE_URL`` does not start with
``postgres``) the calling test is skipped. Missing server binaries skip it too, with the
reason — except in CI (``SIMTOPUP_REQUIRE_SYSTEM_DEPS=1``/``CI=1``), where they fail it
(:mod:`tests.system_deps`). The binaries are looked for in ``SIMTOPUP_PG_BINDIR``, then
``/usr/lib/postgresql/<newest>/bin``, then ``pg_config --bindir``, then ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests import system_deps
from tests.processes import free_port

StopMode = Literal["smart", "fast", "immediate"]
STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
# Small and fast: no fsync (a test cluster is thrown away, and only a machine crash — not a
# killed server — loses what the OS was not told to flush). synchronous_commit stays on: with
# it off, kill() would lose the last commits, which a real server never does.
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "50",
    "max_wal_size": "128MB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "log_min_messages": "warning",
    "log_connections": "off",
    "log_disconnections": "off",
    "dynamic_shared_memory_type": "mmap",  # no dependence on the size of /dev/shm
}
_live: set[PgCluster] = set()


class ClusterError(RuntimeError):
    """The cluster did not do what was asked; the message ends with its server log."""


def find_bindir() -> Path | None:
    """The directory with ``initdb`` and ``postgres``, or None."""
    candidates: list[Path] = []
    if os.environ.get("SIMTOPUP_PG_BINDIR"):
        candidates.append(Path(os.environ["SIMTOPUP_PG_BINDIR"]))
    versions = Path("/usr/lib/postgresql")
    if versions.is_dir():
        numbered = [p for p in versions.iterdir() if p.name.split(".")[0].isdigit()]
        for version in sorted(numbered, key=lambda p: float(p.name), reverse=True):
            candidates.append(version / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


class PgCluster:
    """One private PostgreSQL cluster (see the module's docstring)."""

    def __init__(
        self,
        *,
        dbname: str = "simtopup",
        bindir: Path | None = None,
        settings: dict[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise ClusterError("PostgreSQL server binaries (initdb, postgres) not found")
        self.bindir = found
        self.dbname = dbname
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._base_parent = base_dir
        self.base: Path | None = None
        self._uid: int | None = None
        self._gid: int | None = None
        self._thaw_timer: threading.Timer | None = None
        self._frozen: list[int] = []
        self._created_db = False

    # --- addresses ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        assert self.base is not None, "init() first"
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        assert self.base is not None, "init() first"
        return self.base / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return "(no server log)"

    # --- lifecycle ------------------------------------------------------------------------

    def init(self) -> PgCluster:
        """initdb into a new temporary directory (owned by the server's OS user)."""
        if self.base is not None:
            return self
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ClusterError("running as root, but there is no 'postgres' OS user") from exc
            self._uid, self._gid = user.pw_uid, user.pw_gid
        self.base = Path(tempfile.mkdtemp(prefix="pgcluster-", dir=self._base_parent))
        _live.add(self)
        if self._uid is not None and self._gid is not None:
            os.chown(self.base, self._uid, self._gid)
        result = self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.datadir),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            raise ClusterError(f"initdb failed ({result.returncode}):\n{result.stdout}")
        return self

    def start(self, timeout: float = 30) -> PgCluster:
        """Start the postmaster (initdb first if needed) and wait until it accepts
        connections. The first start picks a free port; later starts keep it."""
        if self.base is None:
            self.init()
        if self.running:
            return self
        self._wait_for_orphans()
        attempts = 5 if self.port == 0 else 1
        for attempt in range(attempts):
            if self.port == 0 or attempt:
                self.port = free_port()
            self._spawn()
            if self._wait_ready(timeout):
                break
            if self.process is not None and self.process.poll() is None:
                self.kill()
                raise ClusterError(
                    f"postgres did not accept connections within {timeout} s:\n{self.log_tail()}"
                )
            if attempt + 1 == attempts or "could not bind" not in self.log_tail(5):
                raise ClusterError(f"postgres did not start:\n{self.log_tail()}")
        if not self._created_db:
            self._create_database()
        return self

    def stop(self, mode: StopMode = "fast", timeout: float = 30) -> None:
        """Stop as ``pg_ctl stop -m mode`` would: smart waits for clients to leave, fast
        disconnects them, immediate quits without a shutdown checkpoint (recovery at the
        next start). Waits until every process of the cluster is gone."""
        self.thaw()
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        process.send_signal(STOP_SIGNALS[mode])
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise ClusterError(
                f"postgres did not stop ({mode}) within {timeout} s:\n{self.log_tail()}"
            ) from None
        finally:
            self.process = None
        self._wait_for_orphans()

    def restart(self, mode: StopMode = "fast", down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again (same port and data)."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would. Its backends notice and quit; the next
        start() runs crash recovery."""
        self.thaw()
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(10)
        self.process = None

    def freeze(self, seconds: float, *, wait: bool = True) -> None:
        """SIGSTOP every process of the cluster (postmaster first: no new backend appears),
        SIGCONT them after ``seconds``. Connections neither fail nor answer meanwhile, as
        with a hung server. With ``wait=False`` it returns at once; thaw() ends it early."""
        if not self.running:
            raise ClusterError("freeze(): the cluster is not running")
        self.thaw()
        assert self.process is not None
        self._frozen = [self.process.pid]
        _signal(self.process.pid, signal.SIGSTOP)
        for pid in self.pids():
            if pid != self.process.pid:
                _signal(pid, signal.SIGSTOP)
                self._frozen.append(pid)
        if wait:
            try:
                time.sleep(seconds)
            finally:
                self.thaw()
        else:
            self._thaw_timer = threading.Timer(seconds, self.thaw)
            self._thaw_timer.daemon = True
            self._thaw_timer.start()

    def thaw(self) -> None:
        """SIGCONT what freeze() stopped (nothing if not frozen)."""
        timer, self._thaw_timer = self._thaw_timer, None
        if timer is not None:
            timer.cancel()
        frozen, self._frozen = self._frozen, []
        for pid in frozen:
            _signal(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop at once, kill whatever is left of the cluster, remove its directory."""
        try:
            self.thaw()
            if self.process is not None and self.process.poll() is None:
                try:
                    self.stop("immediate", timeout=10)
                except ClusterError:
                    self.kill()
            self.process = None
            if self.base is not None:
                for pid in self.pids():
                    _signal(pid, signal.SIGKILL)
                shutil.rmtree(self.base, ignore_errors=True)
        finally:
            _live.discard(self)
            self.base = None

    def __enter__(self) -> PgCluster:
        try:
            return self.start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # --- state ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.process.pid if self.running and self.process is not None else None

    def pids(self) -> list[int]:
        """Every live (not zombie) process of this cluster: postmaster, backends, and
        backends orphaned by a killed postmaster (postgres runs in its data directory)."""
        if self.base is None:
            return []
        datadir = str(self.datadir)
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.readlink(proc / "cwd") != datadir:
                    continue
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                found.append(int(proc.name))
        return found

    # --- internals ------------------------------------------------------------------------

    def _as_server_user(self) -> dict[str, object]:
        if self._uid is None:
            return {}
        return {"user": self._uid, "group": self._gid, "extra_groups": []}

    def _server_env(self) -> dict[str, str]:
        assert self.base is not None
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update({"HOME": str(self.base), "PGDATA": str(self.datadir)})
        return env

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload]
            argv,
            cwd=self.base,
            env=self._server_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._as_server_user(),
        )

    def _spawn(self) -> None:
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        settings = {**self.settings, "unix_socket_directories": str(self.base)}
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # Dies with the test process. A parent-death signal follows the thread that
            # forked, hence only from the main thread (a helper thread may end any time).
            argv = [setpriv, "--pdeathsig", "QUIT", "--", *argv]
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                argv,
                cwd=self.base,
                env=self._server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the terminal is the test's, not its
                **self._as_server_user(),
            )
        finally:
            log.close()

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        self._created_db = True

    def _wait_for_orphans(self, timeout: float = 10) -> None:
        """Backends of a killed postmaster hold its shared memory until they notice and
        quit; a new postmaster refuses to start before. Wait for them, then kill them."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                for pid in self.pids():
                    _signal(pid, signal.SIGKILL)
                time.sleep(0.2)
                break
            time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@atexit.register
def _destroy_leftovers() -> None:
    for cluster in list(_live):
        cluster.destroy()


def on_postgresql_run() -> bool:
    return os.environ.get("SIMTOPUP_DATABASE_URL", "").startswith("postgres")


def require_cluster_support() -> Path:
    """Skip the calling test unless a private cluster can be made here (see the module's
    docstring: PostgreSQL runs only; missing binaries fail in CI). Returns the bindir."""
    if not on_postgresql_run():
        pytest.skip("PostgreSQL only: SIMTOPUP_DATABASE_URL is not a postgresql:// URL")
    bindir = find_bindir()
    if bindir is None:
        system_deps.missing(
            "PostgreSQL server binaries (initdb, postgres)",
            "install postgresql (Debian: apt-get install postgresql) or set SIMTOPUP_PG_BINDIR",
        )
        raise AssertionError("unreachable")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            system_deps.missing(
                "the 'postgres' OS user (initdb and postgres refuse to run as root)",
                "install postgresql (Debian: apt-get install postgresql), which creates it",
            )
    return bindir


@contextlib.contextmanager
def throwaway_cluster(
    dbname: str = "simtopup", settings: dict[str, str] | None = None
) -> Iterator[PgCluster]:
    """A started :class:`PgCluster`, destroyed afterwards (skips as described above)."""
    bindir = require_cluster_support()
    with PgCluster(dbname=dbname, bindir=bindir, settings=settings) as cluster:
        yield cluster


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """Fixture form of :func:`throwaway_cluster` (import it into the test module)."""
    with throwaway_cluster() as cluster:
        yield cluster
