"""Checks that a pip constraints file written by `make lock` still fits pyproject.toml, before `make setup`
or `make setup-vllm` installs with it.

    python requirements/check_lock.py LOCK [--extras train,serve] [REQUIREMENT ...]

Every requirement of the project (its dependencies and the named extras' ones, markers evaluated for this
interpreter) and every extra REQUIREMENT given (what the Makefile installs beside the project) must be pinned
in LOCK (`name==version`) at a version the requirement allows. pip would not say so itself: a constraint on a
package nobody requires is ignored, a required package the lock does not name installs at whatever version
is newest, and a pin outside a range fails deep in pip's resolver. On a mismatch this prints one line naming
each package, the pin and the range, and exits 2. Parsing and matching are `packaging`'s (what pip uses).
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the Makefile installs tomli beside packaging
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def read_lock(path: Path) -> dict[str, tuple[str, Version]]:
    """The lock's pins by canonical name: (name as written, version). Raises ValueError on a line that is
    not `name==version`."""
    pins = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        try:
            if not sep or not name.strip():
                raise InvalidVersion(line)
            pins[canonicalize_name(name.strip())] = (name.strip(), Version(version.strip()))
        except InvalidVersion:
            raise ValueError(f"{path} line {number} '{line}' is not NAME==VERSION") from None
    return pins


def project_requirements(pyproject: Path, extras: list[str]) -> list[Requirement]:
    """The project's dependencies and those of `extras`, expanding the project's extras that name it."""
    project = tomllib.loads(pyproject.read_text())["project"]
    own = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies", {})
    out: list[Requirement] = []
    seen: set[str] = set()

    def add(specs: list[str], extra: str = "") -> None:
        for spec in specs:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            if canonicalize_name(req.name) == own:  # `l2s[train,serve]` inside an extra
                for inner in sorted(req.extras):
                    expand(inner)
                continue
            out.append(req)

    def expand(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise ValueError(f"{pyproject} has no extra '{extra}' (it has: {', '.join(sorted(optional))})")
        seen.add(extra)
        add(optional[extra], extra)

    add(project.get("dependencies", []))
    for extra in extras:
        expand(extra)
    return out


def mismatches(
    pins: dict[str, tuple[str, Version]], requirements: list[tuple[Requirement, str]]
) -> list[str]:
    """What in `requirements` ((requirement, where it comes from) pairs) the pins do not satisfy, one phrase
    each. Prereleases count as allowed: the lock records what was installed.

    >>> pins = {"fastapi": ("fastapi", Version("0.100.0")), "numpy": ("numpy", Version("2.4.6"))}
    >>> mismatches(pins, [(Requirement("fastapi>=0.110"), "pyproject.toml"), (Requirement("numpy>=1.26"),
    ...     "pyproject.toml"), (Requirement("gguf>=0.10"), "the Makefile")])
    ['it pins fastapi==0.100.0 where pyproject.toml needs fastapi>=0.110', 'it pins no version of gguf, which the Makefile needs (gguf>=0.10)']
    """
    out = []
    for req, source in requirements:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            out.append(f"it pins no version of {req.name}, which {source} needs ({req})")
        elif not req.specifier.contains(pin[1], prereleases=True):
            out.append(f"it pins {pin[0]}=={pin[1]} where {source} needs {req}")
    return out


def main(argv: list[str]) -> int:
    args = list(argv)
    extras: list[str] = []
    if "--extras" in args:
        at = args.index("--extras")
        extras = [e for e in args[at + 1].split(",") if e] if at + 1 < len(args) else []
        del args[at : at + 2]
    if not args:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lock, extra_specs = Path(args[0]), args[1:]
    try:
        if not lock.is_file():
            raise ValueError(f"{lock} not found")
        pins = read_lock(lock)
        wanted = [(r, "pyproject.toml") for r in project_requirements(PYPROJECT, extras)]
        wanted += [(Requirement(s), "the Makefile") for s in extra_specs]
    except (ValueError, InvalidRequirement) as e:
        print(f"check_lock: {e}; run `make lock` to write it again", file=sys.stderr)
        return 2
    bad = mismatches(pins, wanted)
    if bad:
        print(f"check_lock: {lock} does not match what setup installs: {'; '.join(bad)}; "
              "run `make lock` to refresh it", file=sys.stderr)  # fmt: skip
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
