"""The Dockerfile, read as Docker reads it: its stages, each a list of instructions."""

from __future__ import annotations

import dataclasses

from tests.support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, RUN...
    arguments: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage, each starting with its FROM; continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[Instruction]] = []
    for entry in logical:
        keyword, _, arguments = entry.strip().partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(arguments.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:  # an ARG before the first FROM belongs to no stage
            stages[-1].append(instruction)
    return stages


def stage_image_and_name(stage: list[Instruction]) -> tuple[str, str | None]:
    words = [word for word in stage[0].arguments.split() if not word.startswith("--")]
    return words[0], words[2] if len(words) == 3 and words[1].upper() == "AS" else None


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]


def image_user() -> tuple[int, int]:
    """The final stage's ``USER uid:gid``, numeric (a name could not be checked by runAsNonRoot)."""
    user = last(dockerfile_stages(DOCKERFILE.read_text())[-1], "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (gid or uid).isdigit(), f"USER {user} is not numeric"
    return int(uid), int(gid or uid)
