"""The documentation matches the code: threshold tables and links.

``docs/tuning.md`` lists every profile value; it must be what ``api/thresholds.py``
says. Every relative link in the user guides and the READMEs must point at a file that
exists, and at a heading that exists when it names one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelrollout.api.thresholds import PROFILES, ConditionOverrides, Profile
from pydantic.alias_generators import to_camel

ROOT = Path(__file__).resolve().parents[2]
# The user guides and the READMEs that link them (the reference pages link each other too,
# and are checked the day they all resolve: extend this list then).
GUIDES = ("quickstart", "concepts", "tuning", "gitops", "dashboard", "troubleshooting", "comparison",
          "operator", "prometheus", "benchmarks", "local-cluster")
DOCS = [ROOT / "docs" / f"{name}.md" for name in GUIDES] + [ROOT / "README.md", ROOT / "charts" / "modelrollout" / "README.md"]
ORDER = (Profile.CONSERVATIVE, Profile.BALANCED, Profile.AGGRESSIVE)


def documented_profiles() -> dict[tuple[str, str], tuple[str, ...]]:
    rows = {}
    for line in (ROOT / "docs" / "tuning.md").read_text().splitlines():
        m = re.match(r"^\| `(\w+)` \| `([\w.]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", line)
        if m:
            rows[(m[1], m[2])] = tuple(v.strip() for v in m.groups()[2:])
    return rows


def code_profiles() -> dict[tuple[str, str], tuple[str, ...]]:
    def fmt(value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    rows: dict[tuple[str, str], tuple[str, ...]] = {}
    for field in ConditionOverrides.model_fields:
        dumps = [getattr(PROFILES[p], field).model_dump(mode="json", by_alias=True, exclude_none=True) for p in ORDER]
        for key, value in dumps[1].items():
            if key == "enabled":
                continue
            if isinstance(value, dict):
                for sub in value:
                    rows[(to_camel(field), f"{key}.{sub}")] = tuple(fmt(d[key][sub]) for d in dumps)
            else:
                rows[(to_camel(field), key)] = tuple(fmt(d[key]) for d in dumps)
    return rows


def test_tuning_md_lists_every_profile_value_as_the_code_has_it():
    documented, code = documented_profiles(), code_profiles()
    assert documented == code, {k: (documented.get(k), code.get(k)) for k in documented.keys() | code.keys()
                                if documented.get(k) != code.get(k)}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", path.read_text(), re.MULTILINE)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, broken
