"""scripts/setup.sh's Java detection and install, run in bash against Java executables on a made-up PATH.

Each fake ``java`` prints what that JDK's ``java -version`` prints; ``apt-get`` on the PATH records
its arguments and, on install, puts a Java 17 where Debian's package does (under JVM_ROOT). The
script's own functions run unchanged (sourced from scripts/setup.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
BASH = shutil.which("bash") or "/bin/bash"
# What the sourced functions call besides bash builtins and java; nothing else is on the PATH.
TOOLS = ("dirname", "mkdir", "grep", "readlink", "ln", "id", "cat", "chmod")

VERSIONS = {
    'openjdk version "17.0.15" 2025-04-15': 17,
    'java version "1.8.0_392"': 8,
    'openjdk version "21" 2023-09-19': 21,
    'openjdk version "11.0.22" 2024-01-16': 11,
    'openjdk version "17-ea" 2021-09-14': 17,
    'openjdk version "25.0.1+8-LTS" 2025-10-21': 25,
}

BY_MAJOR = {8: 'java version "1.8.0_392"', 11: 'openjdk version "11.0.22" 2024-01-16'}
BY_MAJOR |= {17: 'openjdk version "17.0.15" 2025-04-15', 21: 'openjdk version "21" 2023-09-19'}


def _fake_java(home: Path, banner: str) -> Path:
    """``home/bin/java`` printing ``banner`` as java -version does (on stderr)."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True, exist_ok=True)
    java.write_text(
        f"#!{BASH}\n"
        f"echo '{banner}' >&2\n"
        "echo 'OpenJDK Runtime Environment (build x)' >&2\n"
        "echo 'OpenJDK 64-Bit Server VM (build x, mixed mode)' >&2\n"
    )
    java.chmod(0o755)
    return java


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in TOOLS:
        found = shutil.which(name)
        assert found, f"{name} not found on this machine"
        (tools / name).symlink_to(found)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    jvm = tmp_path / "jvm"
    jvm.mkdir()
    log = tmp_path / "apt.log"
    # Stands in for apt: records the call; an install of the JRE puts a Java 17 under JVM_ROOT.
    jre = _fake_java(tmp_path / "package", BY_MAJOR[17])
    apt = fakebin / "apt-get"
    apt.write_text(
        f"#!{BASH}\n"
        f'echo "$*" >> {log}\n'
        'if [ "$1" = install ]; then\n'
        f"  {shutil.which('cp')} -r {jre.parent.parent} {jvm}/java-17-openjdk-amd64\n"
        "fi\n"
    )
    apt.chmod(0o755)
    sudo = fakebin / "sudo"
    sudo.write_text(f'#!{BASH}\nexec "$@"\n')
    sudo.chmod(0o755)
    return {"root": tmp_path, "tools": tools, "fakebin": fakebin, "jvm": jvm, "log": log}


def _run(sandbox: dict[str, Path], script: str, *, path: list[Path], java_home: Path | None = None) -> str:
    env = {
        "PATH": os.pathsep.join(str(p) for p in [*path, sandbox["fakebin"], sandbox["tools"]]),
        "HOME": str(sandbox["root"]),
        "HCC_SHARDS_HOME": str(sandbox["root"] / "home"),
        "JVM_ROOT": str(sandbox["jvm"]),
    }
    if java_home is not None:
        env["JAVA_HOME"] = str(java_home)
    proc = subprocess.run(
        [BASH, "-c", f"source {SETUP}\n{script}"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{script!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


@pytest.mark.parametrize(("banner", "major"), VERSIONS.items())
def test_major_version_of_each_java_banner(sandbox: dict[str, Path], banner: str, major: int) -> None:
    java = _fake_java(sandbox["root"] / "jdk", banner)
    assert _run(sandbox, f"java_major {java}", path=[]) == str(major)


def test_old_java_on_path_is_passed_over_for_a_jvm_under_jvm_root(sandbox: dict[str, Path]) -> None:
    old = _fake_java(sandbox["root"] / "jdk11", BY_MAJOR[11])
    new_home = sandbox["jvm"] / "java-21-openjdk-amd64"
    _fake_java(new_home, BY_MAJOR[21])
    assert _run(sandbox, "find_java", path=[old.parent]) == str(new_home)


def test_java_home_comes_first_then_path(sandbox: dict[str, Path]) -> None:
    on_path = _fake_java(sandbox["root"] / "jdk17", BY_MAJOR[17])
    home = sandbox["root"] / "jdk21"
    _fake_java(home, BY_MAJOR[21])
    assert _run(sandbox, "find_java", path=[on_path.parent], java_home=home) == str(home)
    assert _run(sandbox, "find_java", path=[on_path.parent]) == str(on_path.parent.parent)
    # A JAVA_HOME that is too old is skipped, not trusted.
    old_home = sandbox["root"] / "jdk8"
    _fake_java(old_home, BY_MAJOR[8])
    assert _run(sandbox, "find_java", path=[on_path.parent], java_home=old_home) == str(on_path.parent.parent)


def test_missing_or_old_java_installs_openjdk_17_and_links_it(sandbox: dict[str, Path]) -> None:
    old = _fake_java(sandbox["root"] / "jdk11", BY_MAJOR[11])
    out = _run(sandbox, 'ensure_java && readlink "$ENV_HOME/java"', path=[old.parent])
    assert out == str(sandbox["jvm"] / "java-17-openjdk-amd64")
    calls = sandbox["log"].read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq openjdk-17-jre-headless"]


def test_no_install_when_a_new_enough_java_is_there(sandbox: dict[str, Path]) -> None:
    java = _fake_java(sandbox["root"] / "jdk17", BY_MAJOR[17])
    out = _run(sandbox, 'ensure_java && readlink "$ENV_HOME/java"', path=[java.parent])
    assert out == str(java.parent.parent)
    assert not sandbox["log"].exists()


@pytest.mark.skipif(shutil.which("java") is None, reason="no java on this machine")
def test_this_machines_java_is_found_with_its_real_version() -> None:
    proc = subprocess.run(
        [BASH, "-c", f'source {SETUP}\nhome="$(find_java)" && java_major "$home/bin/java"'],
        env={
            **os.environ,
            "HCC_SHARDS_HOME": os.environ.get("HCC_SHARDS_HOME", str(Path.home() / ".cache/hcc-shards")),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 17
