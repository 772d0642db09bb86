"""Semantic checks of the container files that no off-the-shelf linter knows about.

Run by scripts/check_container_files.sh (stdlib only; the wheel-build section needs
setuptools and wheel, which the tools venv has). Sections:

  containerfile   multi-stage, pinned python:3.11-slim base, dependencies from the hashed
                  lock requirements/runtime.txt, non-root USER, HEALTHCHECK on
                  /health without curl, STOPSIGNAL SIGTERM, EXPOSE 3004, PYTHON* env,
                  nothing but the venv and the probe in the runtime stage, exec-form CMD.
  ignore          .dockerignore == .containerignore; secrets, VCS, venvs, tests, caches
                  excluded; every COPY source of the Containerfile kept (dockerignore
                  semantics re-implemented after moby's patternmatcher).
  compose         on `docker-compose config --format json` output: no container_name,
                  healthchecks, depends_on service_healthy, scale-friendly ports, env
                  overrides, stop_grace_period > SHUTDOWN_GRACE_SECONDS, pinned images,
                  named volumes.
  context         copies the files that survive .containerignore to a temp dir and builds
                  the wheel there offline, as the builder stage would; checks its content
                  and that the runtime lock is hashed and covers install_requires.

Usage: container_static_checks.py --root DIR [--compose-json FILE] SECTION...
Prints one line per check ("ok"/"FAIL"); exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RUNTIME_BASE_RE = re.compile(
    r"^(docker\.io/(library/)?)?python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$"
)
APP_PORT = 3004
APP_SERVICE = "push_service"


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.count += 1
        if ok:
            print(f"  ok    {what}")
        else:
            msg = f"{what}{': ' + detail if detail else ''}"
            print(f"  FAIL  {msg}")
            self.failures.append(msg)
        return ok


# --------------------------------------------------------------------------- Containerfile


@dataclass
class Instr:
    line: int
    cmd: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instrs: list[Instr] = field(default_factory=list)


def parse_containerfile(text: str) -> tuple[list[Instr], list[Stage]]:
    """Dockerfile syntax with the default escape char: comments, continuations, flags."""
    instrs: list[Instr] = []
    buf = ""
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        cmd, _, rest = buf.partition(" ")
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, val = flag[2:].partition("=")
            flags[key.lower()] = val
            rest = rest.strip()
        instrs.append(Instr(start, cmd.upper(), rest, flags))
        buf = ""
    stages: list[Stage] = []
    for ins in instrs:
        if ins.cmd == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, ins.line))
        elif stages:
            stages[-1].instrs.append(ins)
    return instrs, stages


def exec_form(args: str) -> list[str] | None:
    try:
        val = json.loads(args)
    except ValueError:
        return None
    if isinstance(val, list) and all(isinstance(v, str) for v in val):
        return val
    return None


def env_pairs(args: str) -> dict[str, str]:
    toks = shlex.split(args)
    if toks and "=" not in toks[0]:  # legacy "ENV KEY value"
        return {toks[0]: " ".join(toks[1:])}
    return dict(t.split("=", 1) for t in toks if "=" in t)


def image_tag(image: str) -> str | None:
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def duration_seconds(value: str | int | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", value):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


def check_containerfile(root: Path, rep: Report) -> dict[str, str]:
    """Returns facts that the compose checks compare against."""
    print("Containerfile (semantic rules):")
    path = root / "Containerfile"
    facts: dict[str, str] = {}
    if not rep.check(path.is_file(), "Containerfile exists"):
        return facts
    _, stages = parse_containerfile(path.read_text(encoding="utf-8"))
    if not rep.check(len(stages) >= 2, "multi-stage build (>= 2 FROM)", f"{len(stages)} stage(s)"):
        return facts
    final = stages[-1]
    names = [s.name for s in stages[:-1] if s.name]
    rep.check(bool(names), "build stages are named (COPY --from=<name>)")
    for s in stages:
        tag = image_tag(s.image)
        if s.name in names or s is final:
            rep.check(
                tag is not None and tag != "latest" and "$" not in s.image,
                f"line {s.line}: base image {s.image!r} pinned by an explicit tag",
            )
    rep.check(
        bool(RUNTIME_BASE_RE.match(final.image)),
        f"runtime base is python:3.11-slim ({final.image})",
    )
    py_stages = {s.image for s in stages if s.image.split(":")[0].endswith("python")}
    rep.check(
        len(py_stages) == 1,
        "builder and runtime use the same python image",
        ", ".join(sorted(py_stages)),
    )

    builder_runs = " ".join(i.args for st in stages[:-1] for i in st.instrs if i.cmd == "RUN")
    rep.check(
        bool(re.search(r"pip install[^&;]*--require-hashes[^&;]*-r ", builder_runs))
        and any("requirements/runtime.txt" in i.args for st in stages for i in st.instrs),
        "builder installs the hashed lock requirements/runtime.txt (pip --require-hashes)",
    )

    def last(cmd: str, stage: Stage = final) -> Instr | None:
        found = [i for i in stage.instrs if i.cmd == cmd]
        return found[-1] if found else None

    user = last("USER")
    uname = user.args.split(":")[0].strip() if user else ""
    rep.check(
        user is not None and uname not in ("", "root", "0"),
        "runtime stage runs as a non-root USER",
        uname or "no USER",
    )
    env: dict[str, str] = {}
    for ins in final.instrs:
        if ins.cmd == "ENV":
            env.update(env_pairs(ins.args))
    for key in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        rep.check(env.get(key) == "1", f"runtime ENV {key}=1", env.get(key, "unset"))
    rep.check(
        env.get("NODE_ENV") == "production",
        "runtime ENV NODE_ENV=production",
        env.get("NODE_ENV", "unset"),
    )
    rep.check("/opt/venv/bin" in env.get("PATH", ""), "runtime PATH starts with the venv")
    secret_keys = [k for k in env if re.search(r"PRIVATE|SECRET|PASSWORD|TOKEN", k)]
    for ins in (i for s in stages for i in s.instrs if i.cmd == "ARG"):
        if re.search(r"PRIVATE|SECRET|PASSWORD|TOKEN", ins.args.split("=")[0]):
            secret_keys.append(ins.args)
    rep.check(not secret_keys, "no secrets baked in via ENV/ARG", ", ".join(secret_keys))
    grace = env.get("SHUTDOWN_GRACE_SECONDS", "25")
    facts["SHUTDOWN_GRACE_SECONDS"] = grace

    stop = last("STOPSIGNAL")
    rep.check(
        stop is not None and stop.args.strip() in ("SIGTERM", "15"),
        "STOPSIGNAL SIGTERM",
        stop.args if stop else "missing",
    )
    exposed = [p.split("/")[0] for i in final.instrs if i.cmd == "EXPOSE" for p in i.args.split()]
    rep.check(str(APP_PORT) in exposed, f"EXPOSE {APP_PORT}", " ".join(exposed) or "none")

    hc = last("HEALTHCHECK")
    hc_ok = hc is not None and hc.args.upper().startswith("CMD")
    rep.check(hc_ok, "HEALTHCHECK CMD present in the runtime stage")
    if hc is not None and hc_ok:
        hc_cmd = hc.args[3:].strip()
        argv = exec_form(hc_cmd)
        rep.check(argv is not None, "HEALTHCHECK uses exec form (no shell needed)")
        rep.check(
            not re.search(r"\b(curl|wget)\b", hc_cmd),
            "HEALTHCHECK does not rely on curl/wget (not in slim)",
        )
        probe_ok = "/health" in hc_cmd
        if not probe_ok and argv:
            # The probe may be a script copied into the image: follow it back to the context.
            for ins in final.instrs:
                if ins.cmd == "COPY" and "from" not in ins.flags:
                    parts = exec_form(ins.args) or ins.args.split()
                    dest = parts[-1]
                    for src in parts[:-1]:
                        if dest in argv or any(a.startswith(dest.rstrip("/") + "/") for a in argv):
                            f = root / src
                            if f.is_file():
                                txt = f.read_text(encoding="utf-8")
                                if "/health" in txt and "urllib" in txt:
                                    probe_ok = True
                                    facts["healthcheck_path"] = dest
        rep.check(probe_ok, "HEALTHCHECK probes GET /health (stdlib urllib)")
        facts["healthcheck_cmd"] = json.dumps(argv)
    run_cmds = " && ".join(i.args for i in final.instrs if i.cmd == "RUN")
    bad = re.findall(
        r"\b(apt-get\s+install|apt\s+install|apk\s+add|pip\s+install|gcc|g\+\+|build-essential|make\b|curl|wget)",
        run_cmds,
    )
    rep.check(
        not bad, "runtime stage installs no build tools / packages", ", ".join(sorted(set(bad)))
    )
    from_copies = [i for i in final.instrs if i.cmd == "COPY" and "from" in i.flags]
    rep.check(
        all((exec_form(i.args) or i.args.split())[:-1] == ["/opt/venv"] for i in from_copies)
        and bool(from_copies),
        "runtime stage copies only /opt/venv from the builder",
        "; ".join(i.args for i in from_copies),
    )
    ctx_copies = [i for i in final.instrs if i.cmd in ("COPY", "ADD") and "from" not in i.flags]
    bad_src = []
    for i in ctx_copies:
        parts = exec_form(i.args) or i.args.split()
        for src in parts[:-1]:
            if src in (".", "./", "*") or (root / src).is_dir() or "tests" in Path(src).parts:
                bad_src.append(src)
    rep.check(
        not bad_src,
        "runtime stage copies no source tree / tests from the context",
        ", ".join(bad_src),
    )
    rep.check(not [i for i in final.instrs if i.cmd == "ADD"], "runtime stage uses COPY, not ADD")
    cmd = last("CMD")
    entry = last("ENTRYPOINT")
    main = entry or cmd
    rep.check(
        main is not None and exec_form(main.args) is not None,
        "CMD/ENTRYPOINT in exec form (SIGTERM reaches the service)",
    )
    labels: dict[str, str] = {}
    for ins in final.instrs:
        if ins.cmd == "LABEL":
            labels.update(env_pairs(ins.args))
    note = " ".join(f"{k}={v}" for k, v in labels.items()).lower()
    rep.check("grace" in note, "a LABEL documents the stop grace period requirement")
    return facts


# --------------------------------------------------------------------------- ignore files


@dataclass
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def _clean(pattern: str) -> str:
    pattern = os.path.normpath(pattern).replace(os.sep, "/")
    if len(pattern) > 1 and pattern.startswith("/"):
        pattern = pattern[1:]
    return pattern


def _compile(pattern: str) -> re.Pattern[str]:
    """Port of moby/patternmatcher's Pattern.compile (regex flavour)."""
    out = "^"
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                if i + 1 >= n:
                    out += ".*"
                else:
                    out += "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in ".$+()|{}^":
            out += "\\" + ch
        elif ch == "\\":
            i += 1
            if i < n:
                out += re.escape(pattern[i])
        else:
            out += ch
        i += 1
    return re.compile(out + "$")


def load_ignore(path: Path) -> list[Pattern]:
    pats: list[Pattern] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        excl = line.startswith("!")
        if excl:
            line = line[1:].strip()
        line = _clean(line)
        pats.append(Pattern(line, excl, _compile(line)))
    return pats


def is_ignored(rel: str, pats: list[Pattern]) -> bool:
    """moby patternmatcher.MatchesOrParentMatches: the last matching pattern wins."""
    parts = rel.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    matched = False
    for p in pats:
        if p.exclusion != matched:
            continue
        hit = bool(p.regex.match(rel)) or any(p.regex.match(d) for d in parents)
        if hit:
            matched = not p.exclusion
    return matched


def context_files(root: Path, pats: list[Pattern]) -> list[str]:
    """Files that `podman build` / `docker build` would send, as in moby's walker."""
    has_exceptions = any(p.exclusion for p in pats)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        keep = []
        for d in sorted(dirnames):
            rel = d if rel_dir == "." else f"{rel_dir}/{d}"
            # Only walk into an excluded folder if an exception could re-include below it.
            if is_ignored(rel, pats) and (
                not has_exceptions
                or not any(
                    p.exclusion and (p.text.startswith(rel + "/") or p.text.startswith("*"))
                    for p in pats
                )
            ):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            if not is_ignored(rel, pats):
                out.append(rel)
    return out


MUST_EXCLUDE = [
    ".env",
    ".env.production",
    "config/.env.local",
    ".git/config",
    ".git/HEAD",
    ".venv/bin/python",
    ".venv-tools/bin/hadolint",
    "venv-x/.venv/lib/x.py",
    "node_modules/web-push/index.js",
    "web/node_modules/x/index.js",
    "tests/test_api.py",
    "tests/conftest.py",
    "push_service/__pycache__/config.cpython-311.pyc",
    "push_service/tests/test_x.py",
    "vapid_private_key.pem",
    "push_service/keys/private.pem",
    "web/server.key",
    ".vapid-dev-key.pem",
    ".pytest_cache/v/cache",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/x",
    ".hypothesis/examples/x",
    "test-artifacts/trace.zip",
    "push_service.egg-info/PKG-INFO",
    "build/lib/x.py",
    "dist/push_service-0.1.0.whl",
    ".bench/result.json",
    "Makefile",
    "README.md",
    ".ci/run",
]


def copy_sources(root: Path) -> list[str]:
    _, stages = parse_containerfile((root / "Containerfile").read_text(encoding="utf-8"))
    srcs: list[str] = []
    for s in stages:
        for i in s.instrs:
            if i.cmd in ("COPY", "ADD") and "from" not in i.flags:
                parts = exec_form(i.args) or i.args.split()
                srcs.extend(parts[:-1])
    return srcs


def check_ignore(root: Path, rep: Report) -> list[str]:
    print(".containerignore / .dockerignore:")
    ci, di = root / ".containerignore", root / ".dockerignore"
    if not rep.check(ci.is_file(), ".containerignore exists"):
        return []
    same = di.exists() and (di.resolve() == ci.resolve() or di.read_bytes() == ci.read_bytes())
    rep.check(same, ".dockerignore exists and is identical to .containerignore (copy or symlink)")
    pats = load_ignore(ci)
    leaked = [p for p in MUST_EXCLUDE if not is_ignored(p, pats)]
    rep.check(
        not leaked,
        "excludes secrets, VCS, venvs, node_modules, tests, caches, build output"
        f" ({len(MUST_EXCLUDE)} probes)",
        ", ".join(leaked),
    )
    files = context_files(root, pats)
    bad_re = re.compile(
        r"(^|/)(\.git|\.venv[^/]*|node_modules|tests|__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis|test-artifacts)(/|$)"
        r"|(^|/)\.env(\..*)?$|\.(pem|key|p12|pyc)$"
    )
    bad = [f for f in files if bad_re.search(f)]
    size = sum((root / f).stat().st_size for f in files if (root / f).is_file())
    rep.check(
        not bad,
        f"actual build context: {len(files)} files, {size / 1024:.0f} KiB, none forbidden",
        ", ".join(bad[:10]),
    )
    missing = []
    for src in copy_sources(root):
        src_clean = _clean(src).rstrip("/")
        p = root / src_clean
        if not p.exists():
            missing.append(f"{src} (not on disk)")
        elif p.is_dir():
            if not any(f.startswith(src_clean + "/") for f in files):
                missing.append(f"{src} (excluded by .containerignore)")
        elif src_clean not in files:
            missing.append(f"{src} (excluded by .containerignore)")
    rep.check(
        not missing,
        "every COPY source of the Containerfile is in the build context",
        ", ".join(missing),
    )
    return files


# --------------------------------------------------------------------------- compose


def _svc_names_in_url(url: str) -> str:
    return urlsplit(url).hostname or ""


def check_compose(root: Path, cfg: dict[str, Any], facts: dict[str, str], rep: Report) -> None:
    services: dict[str, Any] = cfg.get("services", {})
    for name in (APP_SERVICE, "rabbitmq", "redis"):
        rep.check(name in services, f"service {name} defined")
    with_name = [n for n, s in services.items() if "container_name" in s]
    rep.check(
        not with_name,
        "no service sets container_name (scaling needs generated names)",
        ", ".join(with_name),
    )
    for n, s in services.items():
        hc = s.get("healthcheck") or {}
        test = hc.get("test") or []
        rep.check(
            bool(test) and not hc.get("disable") and test[0] != "NONE",
            f"{n}: healthcheck defined",
        )
        img = s.get("image")
        if img and "build" not in s:
            tag = image_tag(img)
            rep.check(tag not in (None, "latest"), f"{n}: image {img} pinned by tag")
    app = services.get(APP_SERVICE)
    if app:
        build = app.get("build") or {}
        rep.check(
            Path(build.get("context", "")).resolve() == root.resolve(),
            f"{APP_SERVICE}: build context is the repo root",
        )
        rep.check(
            build.get("dockerfile") == "Containerfile",
            f"{APP_SERVICE}: build.dockerfile is Containerfile",
        )
        env_files = [
            Path(e["path"] if isinstance(e, dict) else e).name for e in app.get("env_file") or []
        ]
        rep.check(
            ".env" in env_files, f"{APP_SERVICE}: env_file .env", ", ".join(env_files) or "none"
        )
        env = app.get("environment") or {}
        rep.check(
            env.get("NODE_ENV") == "production", f"{APP_SERVICE}: environment NODE_ENV=production"
        )
        for var, svc, scheme in (
            ("RABBITMQ_URL", "rabbitmq", "amqp"),
            ("REDIS_URL", "redis", "redis"),
        ):
            url = env.get(var) or ""
            rep.check(
                url.startswith(scheme + "://") and _svc_names_in_url(url) == svc,
                f"{APP_SERVICE}: {var} points at the {svc} service",
                url or "unset",
            )
        deps = app.get("depends_on") or {}
        for svc in ("rabbitmq", "redis"):
            cond = (deps.get(svc) or {}).get("condition")
            rep.check(
                cond == "service_healthy",
                f"{APP_SERVICE}: depends_on {svc} with condition service_healthy",
                str(cond),
            )
        grace = float(
            env.get("SHUTDOWN_GRACE_SECONDS") or facts.get("SHUTDOWN_GRACE_SECONDS", "25")
        )
        sgp = app.get("stop_grace_period")
        sgp_s = duration_seconds(sgp) if sgp else 10.0
        rep.check(
            sgp_s > grace,
            f"{APP_SERVICE}: stop_grace_period ({sgp or 'default 10s'})"
            f" > SHUTDOWN_GRACE_SECONDS ({grace:g}s)",
        )
        if "SHUTDOWN_GRACE_SECONDS" in facts and "SHUTDOWN_GRACE_SECONDS" in env:
            rep.check(
                env["SHUTDOWN_GRACE_SECONDS"] == facts["SHUTDOWN_GRACE_SECONDS"],
                f"{APP_SERVICE}: SHUTDOWN_GRACE_SECONDS agrees with the Containerfile",
            )
        rep.check(
            app.get("stop_signal", "SIGTERM") in ("SIGTERM", "15"),
            f"{APP_SERVICE}: stop_signal SIGTERM",
        )
        fixed = [p for p in app.get("ports") or [] if p.get("published")]
        rep.check(
            not fixed,
            f"{APP_SERVICE}: no fixed host port published"
            f" (scale-friendly: `--scale {APP_SERVICE}=3` cannot collide)",
            ", ".join(f"{p.get('published')}:{p.get('target')}" for p in fixed),
        )
        targets = {int(p.get("target", 0)) for p in app.get("ports") or []} | {
            int(str(e).split("/")[0]) for e in app.get("expose") or []
        }
        rep.check(
            not targets or targets == {APP_PORT},
            f"{APP_SERVICE}: only container port {APP_PORT} is published/exposed",
        )
        port_env = env.get("PORT")
        rep.check(
            port_env in (None, str(APP_PORT)),
            f"{APP_SERVICE}: PORT stays {APP_PORT} (EXPOSE/probe/ports agree)",
            str(port_env),
        )
        rep.check("hostname" not in app, f"{APP_SERVICE}: no fixed hostname (replicas must differ)")
        test = (app.get("healthcheck") or {}).get("test") or []
        joined = " ".join(test)
        hc_path = facts.get("healthcheck_path")
        rep.check(
            "/health" in joined or (hc_path is not None and hc_path in joined),
            f"{APP_SERVICE}: healthcheck probes /health (same probe as the Containerfile)",
            joined,
        )
        rep.check(
            not re.search(r"\b(curl|wget)\b", joined),
            f"{APP_SERVICE}: healthcheck needs no curl/wget",
        )
    rmq = services.get("rabbitmq")
    if rmq:
        img = rmq.get("image", "")
        rep.check(
            bool(
                re.match(r"^(docker\.io/(library/)?)?rabbitmq:3(\.\d+)*-management(-alpine)?$", img)
            ),
            f"rabbitmq: image is rabbitmq:3-management ({img})",
        )
        test = " ".join((rmq.get("healthcheck") or {}).get("test") or [])
        rep.check(
            "rabbitmq-diagnostics" in test and "ping" in test,
            "rabbitmq: healthcheck `rabbitmq-diagnostics -q ping`",
            test,
        )
        vols = [
            v
            for v in rmq.get("volumes") or []
            if v.get("type") == "volume" and v.get("target") == "/var/lib/rabbitmq"
        ]
        rep.check(
            bool(vols) and all(v.get("source") in (cfg.get("volumes") or {}) for v in vols),
            "rabbitmq: named volume on /var/lib/rabbitmq",
        )
        rep.check(
            bool(rmq.get("hostname")),
            "rabbitmq: fixed hostname (stable node name, so the volume's data is reused)",
        )
    red = services.get("redis")
    if red:
        img = red.get("image", "")
        rep.check(
            bool(re.match(r"^(docker\.io/(library/)?)?redis:7(\.\d+)*-alpine$", img)),
            f"redis: image is redis:7-alpine ({img})",
        )
        test = " ".join((red.get("healthcheck") or {}).get("test") or [])
        rep.check(
            "redis-cli" in test and "ping" in test, "redis: healthcheck `redis-cli ping`", test
        )
    published: list[str] = []
    for s in services.values():
        for p in s.get("ports") or []:
            if p.get("published"):
                published.append(f"{p.get('host_ip', '')}:{p['published']}")
    dup = sorted({p for p in published if published.count(p) > 1})
    rep.check(not dup, "no host port published twice", ", ".join(dup))


def check_compose_raw(root: Path, rep: Report) -> None:
    print(
        "compose.yaml (semantic rules, on the file and on the normalized"
        " `docker-compose config` model):"
    )
    text = (root / "compose.yaml").read_text(encoding="utf-8")
    rep.check(
        not re.search(r"^version\s*:", text, re.M),
        "compose.yaml has no obsolete top-level `version:`",
    )
    rep.check(
        not re.search(r"^\s*container_name\s*:", text, re.M),
        "compose.yaml has no container_name anywhere",
    )
    others = [
        n
        for n in ("docker-compose.yml", "docker-compose.yaml", "compose.yml")
        if (root / n).exists()
    ]
    rep.check(
        not others,
        "no second compose file that `docker compose` would pick instead",
        ", ".join(others),
    )


# --------------------------------------------------------------------------- context


def _package_data_patterns(root: Path) -> list[str]:
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(root / "setup.cfg", encoding="utf-8")
    raw = cfg.get("options.package_data", "push_service.web", fallback="")
    return [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]


def _install_requires(root: Path) -> list[str]:
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(root / "setup.cfg", encoding="utf-8")
    raw = cfg.get("options", "install_requires", fallback="")
    names = [re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0] for line in raw.splitlines()]
    return [re.sub(r"[-_.]+", "-", n).lower() for n in names if n]


def check_lock(ctx: Path, rep: Report) -> None:
    """The builder installs requirements/runtime.txt: hashed, and covering install_requires."""
    lock = ctx / "requirements/runtime.txt"
    if not rep.check(lock.is_file(), "requirements/runtime.txt is in the build context"):
        return
    text = lock.read_text(encoding="utf-8")
    pinned = {
        re.sub(r"[-_.]+", "-", m).lower()
        for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)
    }
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if "==" in b.split("\n")[0]]
    rep.check(
        bool(blocks) and all("--hash=sha256:" in b for b in blocks),
        f"every pin of the runtime lock has a sha256 hash ({len(blocks)} pins)",
    )
    missing = [n for n in _install_requires(ctx) if n not in pinned]
    rep.check(
        not missing,
        "the runtime lock pins every install_requires of setup.cfg (else: make lock)",
        ", ".join(missing),
    )


def check_context_build(root: Path, files: Iterable[str], rep: Report) -> None:
    print("build context -> wheel (offline, what the builder stage does):")
    files = list(files)
    with tempfile.TemporaryDirectory(prefix="ctx-") as tmp:
        ctx = Path(tmp) / "ctx"
        for rel in files:
            dst = ctx / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dst)
        dist = Path(tmp) / "dist"
        check_lock(ctx, rep)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--quiet",
                "--wheel-dir",
                str(dist),
                str(ctx),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
        wheels = sorted(dist.glob("push_service-*.whl")) if dist.exists() else []
        if not rep.check(
            proc.returncode == 0 and len(wheels) == 1,
            "wheel builds from the build context alone",
            (proc.stderr or proc.stdout)[-800:],
        ):
            return
        with zipfile.ZipFile(wheels[0]) as zf:
            names = zf.namelist()
            ep = next(
                (zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")),
                "",
            )
        rep.check(
            "push_service/__main__.py" in names,
            "wheel has push_service/__main__.py (python -m push_service)",
        )
        rep.check(
            bool(re.search(r"^push-service\s*=", ep, re.M)),
            "wheel declares the console script push-service",
        )
        rep.check(
            "push_service/web/__init__.py" in names,
            "wheel has the push_service.web package (from web/)",
        )
        pats = _package_data_patterns(root)
        assets = [
            f
            for f in files
            if f.startswith("web/")
            and "/" not in f[4:]
            and any(fnmatch.fnmatch(f[4:], p) for p in pats)
        ]
        missing = [a for a in assets if "push_service/web/" + a[4:] not in names]
        rep.check(
            bool(assets) and not missing,
            f"wheel ships the test page assets as package data ({len(assets)} files)",
            ", ".join(missing) or ("no assets in web/" if not assets else ""),
        )
        rep.check(
            "push_service/web/web_push_test.html" in names,
            "wheel ships web_push_test.html (the container's build asserts it)",
        )
        leaked = [
            n
            for n in names
            if re.search(r"(^|/)(tests?|conftest\.py)(/|$)", n) or n.endswith(".pem")
        ]
        rep.check(not leaked, "wheel has no tests or key files", ", ".join(leaked[:5]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--compose-json", type=Path)
    ap.add_argument(
        "sections", nargs="+", choices=["containerfile", "ignore", "compose", "context"]
    )
    a = ap.parse_args()
    root = a.root.resolve()
    rep = Report()
    facts: dict[str, str] = {}
    files: list[str] | None = None
    if "containerfile" in a.sections or "compose" in a.sections:
        facts = check_containerfile(root, rep)
    if "ignore" in a.sections or "context" in a.sections:
        files = check_ignore(root, rep)
    if "compose" in a.sections:
        if a.compose_json is None:
            print("--compose-json is required for the compose section", file=sys.stderr)
            return 2
        check_compose_raw(root, rep)
        check_compose(root, json.loads(a.compose_json.read_text(encoding="utf-8")), facts, rep)
    if "context" in a.sections and files:
        check_context_build(root, files, rep)
    print(f"semantic checks: {rep.count - len(rep.failures)}/{rep.count} passed")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
