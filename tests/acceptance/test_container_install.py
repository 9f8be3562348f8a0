"""The install the Dockerfile does, without a container engine, and the Dockerfile's own promises.

The project's wheel is built with pip, installed into a fresh virtual environment (its dependencies
from the package index), and run as the image's user, from outside the checkout, with a clean
environment: what ``docker run`` does with the image. When the tests run as root (CI does), that user is
the Dockerfile's numeric ``USER``, switched to with ``setpriv``; otherwise the current user.

Two things a container has that this host may not, provided here:
- an interpreter the image's user may run: the venv is made from the first Python that user can start
  (a Python under root's home directory cannot be reached by anyone else);
- a way to the database: the embedded test server listens only on a Unix socket inside its 0700 data
  directory, which only its own OS user can enter, so the image's user is given a hard link to that same
  socket in a directory it may enter (a TCP URL is used as it is).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.checks import JOBS, report
from tests.support.dockerfile import DOCKERFILE, Instruction, dockerfile_stages, image_user, last, stage_image_and_name
from tests.support.paths import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALL_TIMEOUT_S = 600


# The Dockerfile


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return dockerfile_stages(DOCKERFILE.read_text())


def test_dockerfile_builds_in_one_stage_and_runs_from_a_slim_python_of_the_same_image(
    stages: list[list[Instruction]],
) -> None:
    assert len(stages) >= 2
    runtime_image, _ = stage_image_and_name(stages[-1])
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-[a-z]+)?", runtime_image), runtime_image
    # The wheels (psycopg's binary one among them) must be built for the Python and platform that installs them.
    build_image, build_name = stage_image_and_name(stages[0])
    assert build_name is not None
    assert build_image == runtime_image


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = image_user()

    assert uid != 0
    assert gid != 0


def test_dockerfile_entrypoint_is_maintainer_and_its_command_the_daemon(stages: list[list[Instruction]]) -> None:
    assert json.loads(last(stages[-1], "ENTRYPOINT").arguments) == ["maintainer"]
    assert json.loads(last(stages[-1], "CMD").arguments) == ["run"]


def test_dockerfile_healthcheck_calls_maintainer_healthcheck(stages: list[list[Instruction]]) -> None:
    healthcheck = last(stages[-1], "HEALTHCHECK").arguments

    options, separator, command = healthcheck.partition("CMD ")
    assert separator, healthcheck
    assert all(option.startswith("--") for option in options.split())
    assert json.loads(command) == ["maintainer", "healthcheck"]


def test_dockerfile_labels_the_image_with_oci_keys_and_the_project_version(stages: list[list[Instruction]]) -> None:
    labels = dict(
        word.split("=", 1)
        for instruction in stages[-1] if instruction.keyword == "LABEL"
        for word in shlex.split(instruction.arguments)
    )

    assert labels
    assert all(key.startswith("org.opencontainers.image.") for key in labels), labels
    assert labels["org.opencontainers.image.title"] == PROJECT["name"]
    assert labels["org.opencontainers.image.version"] == PROJECT["version"]
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]


def test_runtime_stage_copies_only_the_wheels_of_the_build_stage(stages: list[list[Instruction]]) -> None:
    _, build_name = stage_image_and_name(stages[0])
    wheel_dirs = [
        directory for instruction in stages[0] if instruction.keyword == "RUN"
        for directory in re.findall(r"pip wheel .*(?:--wheel-dir[= ]|-w )(\S+)", instruction.arguments)
    ]
    assert len(set(wheel_dirs)) == 1, "the build stage's pip wheels do not all go to one --wheel-dir"
    wheel_dirs = wheel_dirs[:1]
    copies = [instruction.arguments.split() for instruction in stages[-1] if instruction.keyword in ("COPY", "ADD")]

    assert copies
    for words in copies:
        assert f"--from={build_name}" in words, words
        sources = [word for word in words[:-1] if not word.startswith("--")]
        assert sources == wheel_dirs, words
    assert any("--no-index" in instruction.arguments.split() for instruction in stages[-1]
               if instruction.keyword == "RUN" and "pip install" in instruction.arguments)


LOCK = ROOT / "requirements.lock"


def locked_versions() -> dict[str, str]:
    return {canonicalize_name(name): version
            for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.MULTILINE)}


def test_the_image_installs_its_dependencies_from_the_lock_file_with_hashes(stages: list[list[Instruction]]) -> None:
    pip_commands = [instruction.arguments for stage in stages for instruction in stage
                    if instruction.keyword == "RUN" and "pip " in instruction.arguments]
    dependency_installs = [command for command in pip_commands if "--no-deps" not in command]

    assert dependency_installs
    for command in dependency_installs:
        assert "--require-hashes" in command and "requirements.lock" in command, command


def test_the_lock_file_pins_every_dependency_at_a_version_pyproject_allows_with_its_hashes() -> None:
    locked = locked_versions()

    for requirement in map(Requirement, PROJECT["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run the command at its top"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} against {requirement}"
    for entry in re.split(r"\n(?=[A-Za-z0-9_.-]+==)", LOCK.read_text().split("\n", 3)[-1]):
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


# The installed wheel, run as the image's user


@dataclasses.dataclass(frozen=True)
class Installation:
    wheel: Path
    venv: Path
    outside: Path  # a directory outside the checkout that the image's user may enter
    as_image_user: list[str]  # command prefix; empty when the tests do not run as root

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """``command`` as the image's user, from outside the checkout, with a container's bare environment."""
        env = {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.outside),
               "LANG": "C.UTF-8"}
        return subprocess.run([*self.as_image_user, *command], cwd=self.outside, env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    @property
    def maintainer(self) -> str:
        return str(self.venv / "bin" / "maintainer")


def _must(command: list[str | Path]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{shlex.join(map(str, command))}:\n{result.stdout}{result.stderr}"


def _image_user_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: setpriv (util-linux) is needed to run the install as the image's user"
    uid, gid = image_user()
    # setpriv execs its command while it may still pass any directory; env, exec'd first, may not.
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "env"]


def _python_for(prefix: list[str]) -> str:
    """The first interpreter that the image's user starts with the same standard library as root does."""
    probe = "import sys, venv, ensurepip; print(sys.base_prefix)"
    candidates = [getattr(sys, "_base_executable", sys.executable), "/usr/local/bin/python3", "/usr/bin/python3"]
    for candidate in dict.fromkeys(str(Path(path).resolve()) for path in candidates if Path(path).exists()):
        own = subprocess.run([candidate, "-I", "-c", probe], capture_output=True, text=True, check=False)
        theirs = subprocess.run([*prefix, candidate, "-I", "-c", probe], cwd="/", capture_output=True, text=True,
                                check=False)
        if own.returncode == 0 and (theirs.returncode, theirs.stdout) == (0, own.stdout):
            return candidate
    pytest.skip(f"no Python with venv here that the image's user may run (tried {', '.join(candidates)})")


def _open_to_others(top: Path) -> None:
    """o+rX on what the test created, so that the image's user may read and run it (not through symlinks)."""
    for directory, _, files in os.walk(top):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            executable = stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0
            path.chmod(mode | stat.S_IROTH | executable)


@pytest.fixture(scope="module")
def installation() -> Iterator[Installation]:
    prefix = _image_user_prefix()
    python = _python_for(prefix)
    top = Path(tempfile.mkdtemp(prefix="maintainer-install-"))
    try:
        _must([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", top / "wheels", ROOT])
        [wheel] = (top / "wheels").glob("maintainer-*.whl")
        _must([python, "-m", "venv", top / "venv"])
        # As the Dockerfile does: the dependencies from the lock file, each file checked against its hash.
        _must([top / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--require-hashes", "-r", LOCK])
        _must([top / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", wheel])
        (top / "outside").mkdir()
        if prefix:
            _open_to_others(top)
        yield Installation(wheel, top / "venv", top / "outside", prefix)
    finally:
        shutil.rmtree(top)


@pytest.fixture
def url_for_image_user(database_url: str, installation: Installation) -> Iterator[str]:
    """The test database's URL as the image's user can use it (see the module's docstring)."""
    params = conninfo_to_dict(database_url)
    socket_dir = str(params.get("host") or "")
    if not installation.as_image_user or not socket_dir.startswith("/"):
        yield database_url
        return
    socket_name = f".s.PGSQL.{params.get('port') or 5432}"
    reachable = Path(tempfile.mkdtemp(prefix="maintainer-socket-"))
    try:
        reachable.chmod(0o755)
        os.link(Path(socket_dir) / socket_name, reachable / socket_name)
        yield make_conninfo(database_url, host=str(reachable))
    finally:
        shutil.rmtree(reachable)


def test_installed_commands_run_as_the_image_user_outside_the_checkout(installation: Installation) -> None:
    who = "import os; print(os.getuid(), os.getgid(), os.getcwd(), sep='\\n')"
    result = installation.run(str(installation.venv / "bin" / "python"), "-c", who)

    assert result.returncode == 0, result.stderr
    uid, gid, cwd = result.stdout.splitlines()
    assert (int(uid), int(gid)) == (image_user() if installation.as_image_user else (os.getuid(), os.getgid()))
    assert not Path(cwd).is_relative_to(ROOT)


def test_installed_maintainer_answers_help_with_the_commands_the_image_calls(installation: Installation) -> None:
    result = installation.run(installation.maintainer, "--help")

    assert result.returncode == 0, result.stderr
    for command in ("run", "healthcheck", "check", "run-once", "list"):
        assert installation.run(installation.maintainer, command, "--help").returncode == 0, command


def test_installed_check_passes_on_a_healthy_database(installation: Installation, url_for_image_user: str) -> None:
    result = installation.run(installation.maintainer, "check", "--database-url", url_for_image_user)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = report(result.stdout)
    # Advice only: the fixture lacks the indexes the nightly cleanup wants, like the application's schema.
    assert [(line.status, line.subject) for line in lines if line.status != "ok"] == [
        ("warn", "parlant_event (created_at)"), ("warn", "parlant_session (ended_at)")]
    assert {line.job for line in lines} == {"server", *JOBS}


def test_installed_list_shows_the_five_jobs_outside_the_checkout(installation: Installation) -> None:
    result = installation.run(installation.maintainer, "list")

    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(JOBS)


def test_installed_wheel_carries_the_default_configuration(installation: Installation) -> None:
    with zipfile.ZipFile(installation.wheel) as wheel:
        packaged = wheel.read("maintainer/_config/maintainer.toml").decode()
    assert packaged == (ROOT / "config" / "maintainer.toml").read_text()

    where = ("import jobs, maintainer; from maintainer.settings import default_config_file;"
             " print(jobs.__file__, maintainer.__file__, default_config_file(), default_config_file().is_file())")
    result = installation.run(str(installation.venv / "bin" / "python"), "-c", where)

    assert result.returncode == 0, result.stderr
    *modules, config, is_file = result.stdout.split()
    site_packages = str(installation.venv / "lib")
    assert all(path.startswith(site_packages) for path in [*modules, config]), result.stdout
    assert config.endswith("maintainer/_config/maintainer.toml")
    assert is_file == "True"
