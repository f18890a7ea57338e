"""The Dockerfile builder's front-end: pure, no containers and no image store.

``parse`` reads a Dockerfile into stages of typed instructions (``dockerfile``); ``plan``
picks the stages a ``--target`` needs and the global build-arg scope, and ``ArgScope`` keeps
one stage's variables as its instructions run (``stages``); ``expand`` is Docker's variable
substitution (``substitute``); ``IgnoreRules`` is ``.dockerignore`` (``ignore``).
"""

from composer.runtime.images.build.dockerfile import (
    EXPANDS,
    KEYWORDS,
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    RunScript,
    Stage,
    expand_mounts,
    parse,
    parse_trigger,
    run_script,
)
from composer.runtime.images.build.flags import Healthcheck, Mount
from composer.runtime.images.build.ignore import IgnoreError, IgnoreRules
from composer.runtime.images.build.stages import (
    PLATFORM_ARGS,
    PROXY_ARGS,
    ArgScope,
    BuildPlan,
    PlannedStage,
    global_scope,
    plan,
    platform_args,
)
from composer.runtime.images.build.substitute import (
    ExpansionError,
    expand,
    expand_heredoc,
    split_words,
)

__all__ = [
    "EXPANDS", "KEYWORDS", "PLATFORM_ARGS", "PROXY_ARGS", "ArgScope", "BuildPlan", "Dockerfile",
    "DockerfileError", "ExpansionError", "Healthcheck", "Heredoc", "IgnoreError", "IgnoreRules",
    "Instruction", "Mount", "PlannedStage", "RunScript", "Stage", "expand", "expand_heredoc",
    "expand_mounts", "global_scope", "parse", "parse_trigger", "plan", "platform_args",
    "run_script", "split_words",
]
