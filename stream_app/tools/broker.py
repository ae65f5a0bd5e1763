"""A local single-node KRaft Apache Kafka on 127.0.0.1, from Maven Central jars, for dev and tests.

The jars are resolved once by ``mvn dependency:copy-dependencies`` into a cache directory
(``$XDG_CACHE_HOME/stream_app/kafka-<scala>-<version>``); later starts run no Maven at all. The
same class backs ``stream-app broker``, ``make demo`` and the integration tests' session fixture.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from stream_app.errors import BrokerError
from stream_app.tools.settings import BrokerSettings

__all__ = ["LocalKafka", "cluster_id", "die_with_parent", "fetch_kafka", "free_port", "free_ports"]

log = logging.getLogger(__name__)

READY_LINE: Final = "Kafka Server started"
_POLL_S: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1
_FIRST_CHAR_MASK: Final = 0x7F
"""Clears a cluster id's first top bit: its first base64 character is then A-Z or a-f."""

_POM: Final = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stream_app</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J: Final = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""

_SERVER: Final = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{sasl_listener}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{sasl_listener}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dirs}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""

_SASL: Final = """sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required {users};
"""


def default_cache_dir() -> Path:
    """Where jars are cached when ``broker.cache_dir`` is empty: ``$XDG_CACHE_HOME/stream_app``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stream_app"


def fetch_kafka(settings: BrokerSettings) -> list[Path]:
    """Return the broker's jars, downloading them with Maven only if the cache lacks them."""
    cache = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    home = cache / f"kafka-{settings.scala_version}-{settings.kafka_version}"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes fetching at once wait for each other
        jars = _cached_jars(home)
        if jars:
            return jars
        _maven_copy(home, settings)
        jars = sorted((home / "libs").glob("*.jar"))
        if not jars:
            raise BrokerError(f"Maven resolved no jars into {home / 'libs'}")
        (home / "classpath.txt").write_text("\n".join(j.name for j in jars) + "\n")
        return jars


def _cached_jars(home: Path) -> list[Path]:
    """Return the jars of a finished fetch, or [] if it never finished or a jar is gone."""
    listing = home / "classpath.txt"
    if not listing.exists():
        return []
    jars = [home / "libs" / name for name in listing.read_text().split()]
    return jars if jars and all(j.exists() for j in jars) else []


def _maven_copy(home: Path, settings: BrokerSettings) -> None:
    """Run Maven to copy Kafka and its runtime dependencies into ``home/libs``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it fetches Kafka's jars from Maven Central")
    (home / "pom.xml").write_text(
        _POM.format(scala=settings.scala_version, version=settings.kafka_version)
    )
    shutil.rmtree(home / "libs", ignore_errors=True)
    log.info("fetching Kafka %s jars with Maven into %s", settings.kafka_version, home)
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        [
            mvn,
            "-B",
            "-q",
            "--no-transfer-progress",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={home / 'libs'}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise BrokerError(f"mvn could not fetch Kafka {settings.kafka_version}:\n{tail}")
    log.info("fetched Kafka jars in %.1fs", time.monotonic() - started)


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on loopback (held open together)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class LocalKafka:
    """One KRaft broker+controller process on 127.0.0.1; a context manager that stops it on exit."""

    def __init__(
        self,
        settings: BrokerSettings,
        data_dir: Path,
        *,
        port: int | None = None,
        partitions: int = 4,
        sasl_port: int | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.port = settings.port if port is None else port
        self.controller_port = settings.controller_port or self.port + 1
        self.partitions = partitions
        self.sasl_port = sasl_port
        """If set, a second listener: SASL_PLAINTEXT, mechanism PLAIN, for ``sasl_users``."""
        self.sasl_users = dict(sasl_users or {})
        """User name -> password accepted on the SASL listener (tests of client security)."""
        self.log_file = self.data_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker as Faust and our settings spell it."""
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        """The broker as aiokafka and kcat spell it."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> float:
        """Start the broker (formatting its storage the first time); return seconds until ready."""
        if self.running:
            raise BrokerError("this broker is already running")
        started = time.monotonic()
        classpath = os.pathsep.join(str(j) for j in fetch_kafka(self.settings))
        self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(classpath)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.data_dir / "stderr.log", "ab") as stderr:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                [*self._java(classpath), "kafka.Kafka", str(self.data_dir / "server.properties")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=die_with_parent,  # runs before exec, when no threads exist yet
                start_new_session=True,  # Ctrl-C reaches us, and we stop the broker in order
            )
        self._wait_ready(offset, started + self.settings.start_timeout_s)
        elapsed = time.monotonic() - started
        log.info("broker ready on %s in %.1fs", self.bootstrap, elapsed)
        return elapsed

    def stop(self) -> int | None:
        """Stop cleanly (SIGTERM, then SIGKILL after ``stop_timeout_s``); return the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "broker did not stop in %.0fs; killing it", self.settings.stop_timeout_s
                )
        proc.kill()
        return proc.wait()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (its data dir is kept for a restart)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _java(self, classpath: str) -> list[str]:
        """Return the JVM command line shared by the storage tool and the server."""
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH; Kafka needs Java 17")
        return [
            java,
            f"-Xmx{self.settings.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            "-cp",
            classpath,
        ]

    def _write_config(self) -> None:
        """Write server.properties and log4j.properties for this start's ports."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j.properties").write_text(_LOG4J.format(log_file=self.log_file))
        sasl = self.sasl_port is not None
        server = _SERVER.format(
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=self.data_dir / "logs",
            partitions=self.partitions,
            sasl_listener=f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}" if sasl else "",
        )
        if sasl:
            users = " ".join(f'user_{name}="{pw}"' for name, pw in self.sasl_users.items())
            server += _SASL.format(users=users)
        (self.data_dir / "server.properties").write_text(server)

    def _format(self, classpath: str) -> None:
        """Format KRaft storage once, with a fresh cluster id."""
        result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [
                *self._java(classpath),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id(),
                "-c",
                str(self.data_dir / "server.properties"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def _wait_ready(self, offset: int, deadline: float) -> None:
        """Wait for the server's 'started' line and an open port, or fail with the log's tail."""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise BrokerError(f"the broker exited during start-up:\n{self._log_tail()}")
            if self._log_has(READY_LINE, offset) and _port_open(self.port):
                return
            time.sleep(_POLL_S)
        self.kill()
        raise BrokerError(f"the broker was not ready in time:\n{self._log_tail()}")

    def _log_has(self, text: str, offset: int) -> bool:
        """Tell whether the server log, from ``offset`` on, contains ``text``."""
        if not self.log_file.exists():
            return False
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            return text.encode() in f.read()

    def _log_tail(self, size: int = 4000) -> str:
        """Return the last lines of the server log and stderr, for error messages."""
        tails = []
        for path in (self.log_file, self.data_dir / "stderr.log"):
            if path.exists():
                tails.append(path.read_bytes()[-size:].decode(errors="replace"))
        return "\n".join(tails) or "(no log)"


def cluster_id(raw: bytes | None = None) -> str:
    """Make a KRaft cluster id: unpadded base64url of 16 bytes (a random UUID's by default).

    Its first character is never ``-``: ``kafka-storage format -t -abc`` would read the id as an
    option and fail. Clearing the first byte's top bit keeps the first character in A-Z or a-f.

    >>> cluster_id(bytes([0xF8] + [0] * 15))
    'eAAAAAAAAAAAAAAAAAAAAA'
    """
    data = bytearray(raw if raw is not None else uuid.uuid4().bytes)
    data[0] &= _FIRST_CHAR_MASK
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode()


def _port_open(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM the broker if its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
