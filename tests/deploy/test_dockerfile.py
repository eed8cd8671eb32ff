"""The image as its Dockerfile describes it (no Docker engine needed): a pinned base, wheels built in a first stage from
the hashed lock and installed offline in the last, no compilers, a non-root numeric user, no secrets, metrics on every
interface, everything the agent writes under the declared volumes; a .dockerignore that keeps the clone's state and
secrets out of the build context and what the Dockerfile copies in; lock files that pin (with hashes) every
dependency of pyproject.toml and nothing else, the same versions for the image and for CI's venv."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

IMAGE_EXTRAS = ("kafka", "aws", "azure")  # what requirements.lock covers besides the runtime dependencies
DEV_EXTRAS = ("dev", "report")  # requirements-dev.lock: make venv, CI
# The platform both locks are made for (make lock: Linux x86_64, CPython 3.11), to evaluate dependency markers.
LOCK_ENV: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
}
COMPILERS = {"build-essential", "gcc", "g++", "cc", "c++", "clang", "make", "cmake", "gfortran", "rustc", "cargo",
             "python3-dev", "libc6-dev", "libpython3-dev", "musl-dev", "binutils"}  # fmt: skip
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)


# --- the Dockerfile, parsed as Docker reads it ----------------------------------------------------------------------


@dataclass
class Stage:
    base: str  # the FROM image, build args substituted
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def args_of(self, op: str) -> list[str]:
        return [args for name, args in self.instructions if name == op]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.args_of("ENV"):
            out.update(_assignments(args))
        return out


def _instructions(text: str) -> list[tuple[str, str]]:
    """Instructions with their line continuations joined and comment lines dropped (inside a continuation too)."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not buf):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        op, _, args = buf.strip().partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    assert not buf, f"a line continuation runs off the end of the Dockerfile: {buf!r}"
    return out


def _assignments(args: str) -> dict[str, str]:
    """ENV/ARG/LABEL key=value pairs (the legacy `ENV KEY value` form too)."""
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return {w.partition("=")[0]: w.partition("=")[2] for w in words}


def parse_dockerfile(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for op, args in _instructions(text):
        if op == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert op == "ARG", f"{op} before the first FROM"
            global_args.update(_assignments(args))
        else:
            stages[-1].instructions.append((op, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON) form: {args}"
    return value


def _pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every `pip install` / `pip wheel` in a stage's RUN commands."""
    out: list[list[str]] = []
    for run in stage.args_of("RUN"):
        for command in re.split(r"&&|;|\|\|", run):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i] in ("pip", "pip3", "pip3.11") and words[i + 1] in ("install", "wheel"):
                    out.append(words[i + 1 :])
                elif words[i : i + 3] in (["-m", "pip", "install"], ["-m", "pip", "wheel"]):
                    out.append(words[i + 2 :])
    return out


def _requirement_files(words: list[str]) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-r", "--requirement")]


# --- the Dockerfile ---------------------------------------------------------------------------------------------------

PINNED = re.compile(
    r"^(?:[\w.-]+/)*python:(?P<version>\d+\.\d+\.\d+)-slim-(?P<distro>[a-z]+)(?:@sha256:[0-9a-f]{64})?$"
)


def test_base_images_are_pinned_to_an_exact_version_and_digest(stages: list[Stage]) -> None:
    names = {s.name for s in stages if s.name}
    bases = [s.base for s in stages if s.base not in names]
    assert bases, "no base image"
    for base in bases:
        match = PINNED.match(base)
        assert match, f"{base}: not python:X.Y.Z-slim-<distro>[@sha256:<64 hex>] (an exact version, a digest if any)"
        assert match["version"].startswith("3.11."), f"{base}: the locks are made for CPython 3.11"
        assert match["distro"] == "bookworm", base
        if "@" in base:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", base.split("@", 1)[1]), base
    assert len(set(bases)) == 1, f"stages on different bases (wheels built on one, installed on another): {bases}"


def test_wheels_are_built_in_a_first_stage_from_the_hashed_lock(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a single-stage build"
    builder = stages[0]
    wheels = [w for w in _pip_installs(builder) if w[0] == "wheel"]
    locked = [w for w in wheels if "requirements.lock" in _requirement_files(w)]
    assert locked, "the builder does not build wheels of requirements.lock"
    for words in locked:
        assert "--require-hashes" in words, f"pip wheel of the lock without --require-hashes: {words}"
    assert any("--no-deps" in w and "." in w for w in wheels), "no wheel of the project (pip wheel --no-deps .)"
    assert any("requirements.lock" in c for c in builder.args_of("COPY")), "requirements.lock is not copied in"


def test_the_final_stage_installs_the_lock_offline_from_the_builder_wheels(stages: list[Stage], final: Stage) -> None:
    installs = [w for w in _pip_installs(final) if w[0] == "install"]
    assert installs, "the final stage installs nothing"
    for words in installs:
        assert "--no-index" in words, f"an install in the final stage may reach an index: {words}"
    locked = [w for w in installs if any(f.endswith("requirements.lock") for f in _requirement_files(w))]
    assert locked and all("--require-hashes" in w for w in locked), "the final stage does not install the hashed lock"
    # The wheels it finds are the builder's: a bind mount of the builder's wheel directory (or a COPY of it).
    builder = stages[0].name
    for words in installs:
        links = [w.split("=", 1)[1] for w in words if w.startswith("--find-links=")]
        links += [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--find-links", "-f")]
        assert links, f"an offline install with no wheel directory: {words}"
        for target in links:
            mounted = any(
                re.search(rf"--mount=(?=\S*\bfrom={builder}\b)(?=\S*\btarget={re.escape(target)}(,|\s|$))", run)
                for run in final.args_of("RUN")
            )
            copied = any(
                re.match(rf"--from={builder}\s.*\s{re.escape(target)}/?$", copy) for copy in final.args_of("COPY")
            )
            assert mounted or copied, f"{target}: not the {builder} stage's wheels"
    # The builder's whole tree (its pip caches, anything installed there) does not come along: its wheels only.
    for copy in final.args_of("COPY"):
        assert not re.search(r"--from=\S+\s+/(usr|usr/local|root)?/?\s", copy + " "), copy


def test_no_compilers_in_the_final_stage(final: Stage) -> None:
    for run in final.args_of("RUN"):
        words = {w.split("=", 1)[0] for w in shlex.split(run.replace("&&", " ").replace(";", " "))}
        assert not words & COMPILERS, f"the final stage installs or runs a compiler: {sorted(words & COMPILERS)}"
        assert not re.search(r"\b(apt-get|apt|apk|dnf|yum)\s+(-\S+\s+)*(install|add)\b", run), (
            f"the final stage installs system packages (build them in the builder): {run}"
        )


def test_the_final_stage_runs_as_a_non_root_numeric_user(final: Stage) -> None:
    users = final.args_of("USER")
    assert users, "no USER: the image runs as root"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric uid[:gid] (runAsNonRoot checks a number)"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0), f"USER {user} is root"
    runs = " ".join(final.args_of("RUN"))
    assert re.search(rf"useradd\b[^&;]*--uid {uid}\b", runs), f"no user created with uid {uid} (its HOME, its name)"
    last_user = max(i for i, (op, _) in enumerate(final.instructions) if op == "USER")
    later_runs = [args for op, args in final.instructions[last_user:] if op == "RUN"]
    assert not later_runs, f"RUN after the last USER: {later_runs}"


def test_no_secrets_and_no_remote_files(stages: list[Stage]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    declared: dict[str, str] = {}
    for op, args in _instructions(text):
        if op in ("ENV", "ARG"):
            declared.update(_assignments(args))
        assert op != "ADD" or not re.search(r"\b(https?|git|ftp)://|@github\.com", args), f"ADD of a URL: {args}"
    secrets = sorted(name for name in declared if SECRET_NAME.search(name))
    assert not secrets, f"secrets as ENV/ARG are kept in the image's history and config: {secrets}"
    for stage in stages:
        for copy in stage.args_of("COPY") + stage.args_of("ADD"):
            assert not re.search(r"(^|\s)(\S*/)?(\.env|[^\s]*\.pem|[^\s]*\.key|\.aws|\.azure|\.git)(\s|$)", copy), copy
        for run in stage.args_of("RUN"):
            assert "type=secret" not in run or "cat " not in run, f"a build secret echoed into a layer: {run}"


def test_metrics_listen_on_every_interface_of_the_container(final: Stage) -> None:
    env = final.env()
    assert env.get("FINOPS_METRICS_ADDRESS") == "0.0.0.0", "the embedded default binds 127.0.0.1: unreachable"
    default = (ROOT / "config" / "default.yaml").read_text()
    assert "listen_address: ${FINOPS_METRICS_ADDRESS" in default, "the embedded default no longer reads the variable"
    port = re.search(r"port: \$\{FINOPS_METRICS_PORT:-(\d+)\}", default)
    assert port, "the embedded default's metrics port"
    exposed = {p.split("/")[0] for args in final.args_of("EXPOSE") for p in args.split()}
    assert env.get("FINOPS_METRICS_PORT", port.group(1)) in exposed, f"EXPOSE {exposed}: not the metrics port"
    assert _exec_form(final.args_of("ENTRYPOINT")[-1]) == ["finops-agent"]
    assert _exec_form(final.args_of("CMD")[-1]) == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "finops-agent" in scripts


def _under(path: str, volumes: list[str]) -> bool:
    p = Path(path)
    return p.is_absolute() and any(p == Path(v) or Path(v) in p.parents for v in volumes)


def test_everything_the_agent_writes_is_under_a_volume(final: Stage) -> None:
    volumes = [v for args in final.args_of("VOLUME") for v in _exec_form(args)]
    assert volumes, "no VOLUME: a read-only root filesystem leaves the agent nowhere to write"
    env = final.env()
    # Every variable the embedded default builds a path from (state, dead letters, demo month, inboxes) is set in the
    # image, to a path under a volume; so are HOME and TMPDIR (s3_export / azure_export download to the temp dir).
    default = (ROOT / "config" / "default.yaml").read_text()
    path_vars = set(re.findall(r"(?:path|directory): \$\{(\w+)", default))
    assert {"FINOPS_STATE_DIR", "FINOPS_DEMO_DIR", "FINOPS_INBOX"} <= path_vars, path_vars
    for name in sorted(path_vars | {"HOME"}):
        assert name in env, f"{name} is not set: the embedded default writes under the working directory"
        assert _under(env[name], volumes), f"{name}={env[name]} is not under a volume {volumes}"
    assert _under(env.get("TMPDIR", "/tmp"), volumes), f"the temp dir is not a volume {volumes}"
    workdir = final.args_of("WORKDIR")[-1]
    assert _under(workdir, volumes), f"WORKDIR {workdir}: relative paths of a config land outside the volumes"
    # The state volume exists in the image, owned by the user (a Docker volume takes its ownership from the image).
    uid = final.args_of("USER")[-1].partition(":")[0]
    state = env["FINOPS_STATE_DIR"]
    runs = " ".join(final.args_of("RUN"))
    assert re.search(rf"(install -d[^&;]*-o {uid}\b[^&;]*|chown[^&;]*\b{uid}\b[^&;]*){re.escape(state)}", runs), (
        f"{state} is not created for uid {uid}"
    )
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "Python writes bytecode next to the (read-only) code"


# --- .dockerignore ----------------------------------------------------------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line of .dockerignore, as Docker matches them: Go's filepath.Match per path element, `**`
    for any number of directories, a pattern that matches a directory excludes all below it, the last match wins."""
    out: list[tuple[bool, re.Pattern[str]]] = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pattern[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pattern[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pattern[i]), i + 1
        out.append((negated, re.compile(rx + "(?:/.*)?")))
    return out


def _ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negated, rx in patterns:
        if rx.fullmatch(path):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_state_caches_and_secrets_out() -> None:
    patterns = _ignore_patterns()
    for path in [".git/HEAD", ".venv/bin/python", ".agent-state/agent-state.pkl", "demo-data/anomalies.json",
                 "inbox/bedrock/a.jsonl", "out/alerts.jsonl", "bench/out/nab/summary.json", "tests/conftest.py",
                 "agent/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/cache", ".mypy_cache/3.11/x.json",
                 ".ruff_cache/x", "finops_agent.egg-info/PKG-INFO", "alerts.jsonl.dead-letter.jsonl", ".env",
                 "config/prod.pem"]:  # fmt: skip
        assert _ignored(path, patterns), f"{path} is sent to the Docker build context"


def test_dockerignore_keeps_what_the_dockerfile_copies(stages: list[Stage]) -> None:
    patterns = _ignore_patterns()
    sources: list[str] = []
    for stage in stages:
        for copy in stage.args_of("COPY"):
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            if not any(w.startswith("--from") for w in shlex.split(copy)):
                sources += words[:-1]
    assert {"requirements.lock", "pyproject.toml", "agent", "config"} <= set(sources), sources
    tracked = subprocess.run(["git", "ls-files", *sources], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [f for f in tracked.stdout.splitlines() if (ROOT / f).exists()]
    assert any(f.startswith("agent/data/") for f in files) and "config/default.yaml" in files, files[:20]
    excluded = [f for f in files if _ignored(f, patterns)]
    assert not excluded, f"the Dockerfile copies what .dockerignore leaves out: {excluded[:10]}"


# --- the lock files ---------------------------------------------------------------------------------------------------


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, sha256 hashes)}; every requirement line of a lock is `name==version --hash ...`."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{path.name}: not an exact pin with hashes: {line[:120]}"
        name = canonicalize_name(match.group(1))
        assert name not in out, f"{path.name}: {name} twice"
        out[name] = (match.group(2), re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
    return out


def _project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def _closure(roots: list[Requirement], lock: dict[str, tuple[str, list[str]]]) -> set[str]:
    """Every package the roots need on the lock's platform, by the metadata of the locked versions (installed here:
    requirements-dev.lock is what make venv installs, and it locks the image's packages at the same versions)."""
    seen: dict[str, set[str]] = {}
    todo = [(r, {""}) for r in roots]
    while todo:
        req, from_extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({**LOCK_ENV, "extra": e}) for e in from_extras):
            continue
        name = canonicalize_name(req.name)
        extras = {""} | {canonicalize_name(e) for e in req.extras}
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        assert name in lock, f"{req} is not locked (run make lock)"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} does not satisfy {req}"
        installed = metadata.version(name)
        assert installed == version, f"{name}: {installed} installed, {version} locked (make venv after make lock)"
        for dep in metadata.requires(name) or []:
            todo.append((Requirement(dep), extras))
    return set(seen)


@pytest.mark.parametrize(
    ("lock_file", "extras"), [("requirements.lock", IMAGE_EXTRAS), ("requirements-dev.lock", DEV_EXTRAS)]
)
def test_a_lock_pins_with_hashes_every_dependency_of_pyproject_and_nothing_else(
    lock_file: str, extras: tuple[str, ...]
) -> None:
    lock = parse_lock(ROOT / lock_file)
    roots = _project_requirements(extras)
    for req in roots:
        name = canonicalize_name(req.name)
        assert name in lock, f"{lock_file} does not pin {req.name} (pyproject.toml changed: run make lock)"
        assert lock[name][1], f"{lock_file}: {name} without a hash"
    needed = _closure(roots, lock)
    stale = sorted(set(lock) - needed)
    assert not stale, f"{lock_file} pins packages nothing needs any more (run make lock): {stale}"


def test_the_image_and_ci_use_the_same_versions() -> None:
    image, dev = parse_lock(ROOT / "requirements.lock"), parse_lock(ROOT / "requirements-dev.lock")
    differ = {n: (v, dev.get(n, ("missing",))[0]) for n, (v, _) in image.items() if dev.get(n, ("",))[0] != v}
    assert not differ, f"CI tests other versions than the image runs (image, CI): {differ}"
    assert all(set(image[n][1]) == set(dev[n][1]) for n in image), "the same version with other hashes"


def test_make_lock_writes_the_locks_and_make_venv_installs_from_them() -> None:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    stamp = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert stamp, "the venv rule"
    assert "requirements-dev.lock" in stamp.group(1), "the venv is not rebuilt when the lock changes"
    recipe = stamp.group(2)
    assert re.search(r"pip install [^\n]*--require-hashes -r requirements-dev\.lock", recipe), recipe
    assert re.search(r"pip install [^\n]*--no-deps -e \.", recipe), "the project is installed with its own deps"
    assert not re.search(r"pip install [^\n]*-e \"?\.\[", recipe), "the venv installs unlocked extras"
    lock = re.search(r"^lock:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert lock, "no make lock"
    lines = lock.group(1).splitlines()
    image_line = next(ln for ln in lines if ln.rstrip().endswith("-o requirements.lock"))
    dev_line = next(ln for ln in lines if ln.rstrip().endswith("-o requirements-dev.lock"))
    assert re.findall(r"--extra (\w+)", image_line) == list(IMAGE_EXTRAS), image_line
    assert re.findall(r"--extra (\w+)", dev_line) == list(DEV_EXTRAS), dev_line
    flags = re.search(r"^LOCK_FLAGS =(.*)$", makefile, re.MULTILINE)
    assert flags and "--generate-hashes" in flags.group(1), "make lock writes no hashes"
    assert "--python-version 3.11" in flags.group(1) and "x86_64" in flags.group(1), "the lock's platform"


def test_the_chart_runs_the_image_as_its_user_with_its_volumes_mounted(final: Stage) -> None:
    """The Helm chart's defaults agree with the image: the same uid/gid (a Docker volume and an fsGroup both give the
    state directory to it) and a volume mounted at each path the image declares one (the root is read-only there)."""
    import yaml

    chart = ROOT / "deploy" / "helm" / "finops-agent"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    uid, _, gid = final.args_of("USER")[-1].partition(":")
    for key in ("podSecurityContext", "securityContext"):
        context = values[key]
        assert str(context.get("runAsUser", uid)) == uid, f"{key}.runAsUser {context.get('runAsUser')}: image {uid}"
        assert str(context.get("runAsGroup", gid or uid)) == (gid or uid), f"{key}.runAsGroup: image {gid}"
    templates = " ".join(p.read_text() for p in (chart / "templates").glob("*") if p.is_file())
    mounted = set(re.findall(r"mountPath:\s*(/\S+)", templates))
    volumes = [v for args in final.args_of("VOLUME") for v in _exec_form(args)]
    assert set(volumes) <= mounted, f"the image's volumes {volumes}; the chart mounts {sorted(mounted)}"
