"""Resolving the Kafka and Apicurio jars from Maven Central into a cache, once.

``fetch_runtime()`` runs Maven against ``sandbox/kafka/pom.xml`` (versions live there and only there),
copies the broker classpath into ``<cache>/kafka-<version>/libs`` and unpacks the Apicurio ``all``
tarball into ``<cache>/apicurio-<version>/``. Each step writes a completion stamp (the versions it
fetched) only after it fully succeeded, so a warm call is a couple of ``stat`` calls, an interrupted
one is redone, and a version change in the pom refetches (an edit that changes no version does not).
A file lock makes concurrent callers (parallel test sessions) wait for one another instead of
downloading into the same directory twice.

Apicurio 3.3 needs Java 21+. With no such Java installed the fallback version from the pom (3.0.x,
Java 17) is fetched instead, with a one-line warning.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.kafka.jvm import Java, RuntimeMissingError, find_java, require_java

POM_PATH = Path(__file__).with_name("pom.xml")
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
STAMP_NAME = ".complete"

KAFKA_MIN_JAVA = 17
APICURIO_MIN_JAVA = 21  # Apicurio 3.3 class files are version 65
_POM_NS = "{http://maven.apache.org/POM/4.0.0}"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """Where fetched runtimes live unless the caller says otherwise: ``~/.cache/psinfor/runtime``."""
    return Path.home() / ".cache" / "psinfor" / "runtime"


def stderr_progress(line: str) -> None:
    """Progress sink used by the CLI and the test fixtures: one line on stderr."""
    print(f"psinfor runtime: {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PomVersions:
    """The versions pinned in ``sandbox/kafka/pom.xml``."""

    kafka: str
    log4j: str
    apicurio: str
    apicurio_fallback: str

    @property
    def kafka_stamp(self) -> str:
        """What a complete broker classpath was fetched for; a different value means refetch."""
        return f"kafka {self.kafka}, log4j {self.log4j}"


@dataclass(frozen=True)
class KafkaRuntime:
    """A complete broker classpath (``libs/*``) and the Java to run it with."""

    version: str
    libs_dir: Path
    java: Java
    log4j2_config: Path

    @property
    def classpath(self) -> str:
        """The ``-cp`` value: every jar in ``libs_dir``."""
        return str(self.libs_dir / "*")


@dataclass(frozen=True)
class RegistryRuntime:
    """An unpacked Apicurio Registry (Quarkus fast-jar layout) and the Java to run it with."""

    version: str
    jar: Path
    java: Java


@dataclass(frozen=True)
class Runtime:
    """Everything the launchers need, as returned by :func:`fetch_runtime`."""

    kafka: KafkaRuntime
    registry: RegistryRuntime


def read_pom_versions(pom: Path = POM_PATH) -> PomVersions:
    """The ``kafka.version``, ``apicurio.version`` and ``apicurio.fallback.version`` pom properties."""
    root = ET.parse(pom).getroot()  # noqa: S314 - our own file, not untrusted input
    properties = root.find(f"{_POM_NS}properties")
    if properties is None:
        raise ValueError(f"{pom} has no <properties>")

    def prop(name: str) -> str:
        element = properties.find(f"{_POM_NS}{name}")
        if element is None or not (element.text or "").strip():
            raise ValueError(f"{pom} lacks the property {name}")
        return (element.text or "").strip()

    return PomVersions(
        kafka=prop("kafka.version"),
        log4j=prop("log4j.version"),
        apicurio=prop("apicurio.version"),
        apicurio_fallback=prop("apicurio.fallback.version"),
    )


def apicurio_stamp(version: str) -> str:
    """What an unpacked registry was fetched for."""
    return f"apicurio {version}"


def _stamped(directory: Path, expected: str) -> bool:
    stamp = directory / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == expected


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _mvn(args: list[str], *, maven_repo: Path | None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeMissingError("Maven (mvn) is not installed: install Maven: apt-get install maven")
    argv = [mvn, "-B", "-q", "-f", str(POM_PATH), *args]
    if maven_repo is not None:
        argv.append(f"-Dmaven.repo.local={maven_repo}")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise RuntimeMissingError(f"mvn {' '.join(args)} failed (exit {done.returncode}):\n{output}")


def _fetch_kafka(target: Path, stamp: str, maven_repo: Path | None, progress: Progress) -> None:
    progress(f"resolving the Kafka broker jars into {target} (Maven Central, once)")
    started = time.monotonic()
    # Built beside the target and swapped in whole, so nobody ever sees a half-filled libs directory.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    libs = partial / "libs"
    _mvn(
        [
            "-P",
            "kafka",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        maven_repo=maven_repo,
    )
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise RuntimeMissingError(f"Maven finished but {libs} holds no kafka_2.13 jar")
    (partial / STAMP_NAME).write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    libs = target / "libs"
    progress(f"Kafka jars ready ({len(list(libs.glob('*.jar')))} jars, {time.monotonic() - started:.1f} s)")


def _fetch_apicurio(
    target: Path, version: str, stamp: str, maven_repo: Path | None, progress: Progress
) -> None:
    progress(f"downloading Apicurio Registry {version} (~150 MB, once) and unpacking it into {target}")
    started = time.monotonic()
    download = target.with_name(target.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    _mvn(
        [
            "-P",
            "registry",
            "dependency:copy",
            f"-DoutputDirectory={download}",
            f"-Dapicurio.version={version}",
        ],
        maven_repo=maven_repo,
    )
    tarballs = sorted(download.glob(f"apicurio-registry-app-{version}*.tar.gz"))
    if not tarballs:
        raise RuntimeMissingError(f"Maven finished but {download} holds no Apicurio tarball")
    unpacking = target.with_name(target.name + ".unpacking")
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(tarballs[0]) as archive:
        archive.extractall(unpacking, filter="data")
    (unpacking / STAMP_NAME).write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    unpacking.rename(target)
    shutil.rmtree(download, ignore_errors=True)
    progress(f"Apicurio {version} ready ({time.monotonic() - started:.1f} s)")


def find_registry_jar(directory: Path) -> Path:
    """The runnable jar of an unpacked Apicurio: ``quarkus-run.jar`` (3.1+) or ``*-runner.jar`` (3.0)."""
    for pattern in ("quarkus-run.jar", "*-runner.jar"):
        hits = sorted(directory.rglob(pattern), key=lambda path: len(path.parts))
        if hits:
            return hits[0]
    raise RuntimeMissingError(f"no quarkus-run.jar or *-runner.jar under {directory}; delete it to refetch")


def choose_registry_java(versions: PomVersions, explicit_java: Path | None) -> tuple[str, Java, str | None]:
    """The Apicurio version to run, the Java for it, and a warning when falling back to the old version."""
    modern = find_java(APICURIO_MIN_JAVA, explicit=explicit_java, prefer_newest=True)
    if modern is not None:
        return versions.apicurio, modern, None
    old = require_java(KAFKA_MIN_JAVA, explicit=explicit_java)
    warning = (
        f"no Java {APICURIO_MIN_JAVA}+ found: running Apicurio {versions.apicurio_fallback} on Java "
        f"{old.version} instead of {versions.apicurio}"
    )
    return versions.apicurio_fallback, old, warning


def fetch_runtime(
    cache_dir: Path | None = None,
    *,
    maven_repo: Path | None = None,
    java: Path | None = None,
    kafka: bool = True,
    registry: bool = True,
    progress: Progress = stderr_progress,
) -> Runtime:
    """Make sure the broker jars and the registry are in ``cache_dir``; returns where they are.

    Downloads only what is missing or was fetched for a different pom (cheap when warm). ``maven_repo``
    overrides Maven's local repository (a cold-start measurement uses an empty one); ``java`` names a
    preferred ``java`` executable. ``kafka=False`` / ``registry=False`` skip fetching that part (the
    returned paths for it may then not exist yet). Raises :class:`RuntimeMissingError` when ``mvn`` or a
    suitable ``java`` is missing or Maven fails.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    versions = read_pom_versions()
    kafka_java = require_java(KAFKA_MIN_JAVA, explicit=java)
    apicurio_version, registry_java, warning = choose_registry_java(versions, java)
    if warning is not None and registry:
        progress(warning)
    kafka_dir = cache / f"kafka-{versions.kafka}"
    apicurio_dir = cache / f"apicurio-{apicurio_version}"
    with _locked(cache):
        if kafka and not _stamped(kafka_dir, versions.kafka_stamp):
            _fetch_kafka(kafka_dir, versions.kafka_stamp, maven_repo, progress)
        stamp = apicurio_stamp(apicurio_version)
        if registry and not _stamped(apicurio_dir, stamp):
            _fetch_apicurio(apicurio_dir, apicurio_version, stamp, maven_repo, progress)
    registry_jar = find_registry_jar(apicurio_dir) if registry else apicurio_dir / "quarkus-run.jar"
    return Runtime(
        kafka=KafkaRuntime(versions.kafka, kafka_dir / "libs", kafka_java, LOG4J2_CONFIG),
        registry=RegistryRuntime(apicurio_version, registry_jar, registry_java),
    )
