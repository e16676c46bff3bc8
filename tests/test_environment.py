"""requirements.txt, requirements-lock.txt and environment.yml carry the same pins."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)\s*$")


def pins(path: Path, only_pip_section: bool = False) -> dict[str, str]:
    found = {}
    in_pip = not only_pip_section
    for line in path.read_text().splitlines():
        if only_pip_section and re.match(r"^\s*-\s*pip:\s*$", line):
            in_pip = True
            continue
        match = PIN.match(line)
        if in_pip and match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_environment_yml_has_exactly_the_requirements_pins():
    requirements = pins(ROOT / "requirements.txt")
    environment = pins(ROOT / "environment.yml", only_pip_section=True)
    assert requirements, "no pins read from requirements.txt"
    assert environment == requirements


def test_every_requirement_is_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert PIN.match(line), f"requirements.txt line not pinned with ==: {line!r}"


def test_lock_agrees_with_requirements():
    lock = pins(ROOT / "requirements-lock.txt")
    for name, version in pins(ROOT / "requirements.txt").items():
        assert lock.get(name) == version, f"{name}: requirements {version}, lock {lock.get(name)}"


def test_torch_is_pinned_everywhere():
    """An unpinned torch pulls GBs of CUDA packages: it must be pinned in all three files."""
    for path in ("requirements.txt", "requirements-lock.txt"):
        assert pins(ROOT / path).get("torch") == "2.13.0", path
    assert pins(ROOT / "environment.yml", only_pip_section=True).get("torch") == "2.13.0"


def test_environment_yml_uses_python_311():
    assert re.search(r"^\s*-\s*python=3\.11\s*$", (ROOT / "environment.yml").read_text(), re.M)
