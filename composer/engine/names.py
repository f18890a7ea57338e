"""Names for containers created without one, in Docker's ``adjective_noun`` style."""

from __future__ import annotations

import random

from composer.runtime.spec import NAME_RULE

_ADJECTIVES = (
    "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "keen", "kind", "lively",
    "lucid", "merry", "nifty", "patient", "proud", "quiet", "quick", "sharp", "steady", "swift",
    "tender", "upbeat", "vivid", "warm", "wise", "witty", "zealous", "bold", "bright", "crisp",
)
_NOUNS = (
    "otter", "falcon", "heron", "lynx", "marten", "osprey", "panda", "puffin", "raven", "robin",
    "salmon", "sparrow", "stoat", "swan", "tern", "walrus", "wren", "badger", "beaver", "bison",
    "cedar", "maple", "willow", "alder", "birch", "rowan", "aspen", "hazel", "larch", "spruce",
)


def generated(taken: set[str], rng: random.Random | None = None) -> str:
    """A free ``adjective_noun`` name (a number appended once the pairs run out)."""
    rng = rng or random.Random()
    for attempt in range(100):
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if attempt >= 10:
            name += str(rng.randint(1, 9999))
        if name not in taken:
            return name
    raise RuntimeError("no free container name")


def valid(name: str) -> bool:
    """Docker's rule for container names."""
    return NAME_RULE.fullmatch(name) is not None
