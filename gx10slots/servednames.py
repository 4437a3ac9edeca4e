"""Which model names a slot serves, whether it can serve several, and its identity (pure).

The names come from what the engine will actually receive: the container's command and args with
Kubernetes' ``$(VAR)`` references expanded from the container's literal env, exactly as the kubelet
does. A ``$(VAR)`` reference always expands *inside one argument*, never into several (Kubernetes
does no word splitting: pkg/kubelet/container/helpers.go ExpandContainerCommandAndArgs ->
third_party/forked/golang/expansion), so a list of names cannot travel in one variable to vLLM.
Instead `slots deploy` writes the extra names as literal arguments right after the engine's
served-name option, the first value staying ``$(SERVED_MODEL_NAME)``:

- vLLM: ``--served-model-name $(SERVED_MODEL_NAME) old-name gx10slots/green``. The option takes
  several values (vllm/config/model.py ``served_model_name: str | list[str]``: "If multiple names
  are provided, the server will respond to any of the provided names"), and /v1/models lists one
  card per name (vllm/entrypoints/openai/serving_models.py, one per base model path).
- llama-server: ``--alias $(SERVED_MODEL_NAME),old-name,gx10slots/green``: one comma-separated
  argument (common/arg.cpp "set model name aliases, comma-separated", ggml-org/llama.cpp#19926);
  /v1/models lists them all under ``aliases`` (tools/server/server-context.cpp
  get_res_model_info). They go into a ``std::set``: the card's ``id`` (and every response's
  ``model``) is the alphabetically first name, not the first given.

Every other engine (llama-cpp-python's single ``--model_alias``, ...) serves one name.

Each slot also serves an *identity* name, ``gx10slots/<slot>``, that no other slot serves and no
client uses: a request through production naming it can only be answered by that slot, which is
how a flip's verification tells the slots apart when both serve the same client-facing names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

IDENTITY_PREFIX = "gx10slots/"
# The option that carries the served names, per engine that can serve several.
NAME_OPTIONS: Mapping[str, str] = {"vllm": "--served-model-name", "llama-server": "--alias"}
# Engines whose option takes the names as one comma-separated argument.
COMMA_SEPARATED = frozenset({"llama-server"})
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def identity_name(slot: str) -> str:
    return IDENTITY_PREFIX + slot


def is_identity(name: str) -> bool:
    return name.startswith(IDENTITY_PREFIX)


def literal_env(container: Mapping[str, Any] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (container or {}).get("env") or []:
        if isinstance(item, Mapping) and isinstance(item.get("value"), str):
            env[str(item.get("name"))] = item["value"]
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is a literal ``$``, an undefined reference stays
    as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def container_argv(container: Mapping[str, Any] | None) -> list[str]:
    """command + args as the process receives them (image entrypoint not included)."""
    env = literal_env(container)
    raw = [*((container or {}).get("command") or []), *((container or {}).get("args") or [])]
    return [expand(str(arg), env) for arg in raw]


def _option_values(argv: Sequence[str], option: str, comma: bool) -> list[str] | None:
    """The values of ``option`` in ``argv`` (None when the option is absent)."""
    for index, arg in enumerate(argv):
        if arg.startswith(option + "="):
            values = [arg.split("=", 1)[1]]
            rest = index + 1
        elif arg == option:
            values, rest = [], index + 1
        else:
            continue
        if comma:
            if not values and rest < len(argv):
                values = [argv[rest]]
            return [v for value in values for v in value.split(",") if v]
        if not values:  # argparse nargs="+": every value up to the next option
            while rest < len(argv) and not argv[rest].startswith("-"):
                values.append(argv[rest])
                rest += 1
        return [v for v in values if v]
    return None


def _dedupe(names: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name and name not in seen:
            seen.append(name)
    return seen


def served_names(
    container: Mapping[str, Any] | None, engine: str, served_name_env: str, model_env: str
) -> list[str]:
    """Every name the slot's engine serves, the primary first."""
    env = literal_env(container)
    primary = env.get(served_name_env) or env.get(model_env)
    option = NAME_OPTIONS.get(engine)
    if option is not None:
        values = _option_values(container_argv(container), option, engine in COMMA_SEPARATED)
        if values:
            return _dedupe(values)
    return [primary] if primary else []


def alias_blocker(
    container: Mapping[str, Any] | None, engine: str, served_name_env: str
) -> str | None:
    """Why this slot cannot serve extra names, or None when it can."""
    option = NAME_OPTIONS.get(engine)
    if option is None:
        return f"engine {engine} serves a single model name"
    raw = [*((container or {}).get("command") or []), *((container or {}).get("args") or [])]
    values = _option_values([str(a) for a in raw], option, engine in COMMA_SEPARATED)
    if not values or values[0] != f"$({served_name_env})":
        return (
            f"the container's args do not pass {option} $({served_name_env}) (see "
            "docs/manifests), so extra names have nowhere to go"
        )
    return None


def with_names(
    container: dict[str, Any], engine: str, served_name_env: str, extra: Sequence[str]
) -> bool:
    """Rewrite the values of the served-name option to ``$(SERVED_NAME_ENV)`` + ``extra``, in
    place; True when anything changed. Call only when :func:`alias_blocker` says None."""
    option = NAME_OPTIONS[engine]
    comma = engine in COMMA_SEPARATED
    wanted = [f"$({served_name_env})", *_dedupe(extra)]
    for key in ("command", "args"):
        raw = [str(a) for a in container.get(key) or []]
        for index, arg in enumerate(raw):
            if arg != option and not arg.startswith(option + "="):
                continue
            end = index + 1
            if arg == option:
                if comma:
                    end = min(index + 2, len(raw))
                else:
                    while end < len(raw) and not raw[end].startswith("-"):
                        end += 1
            values = [",".join(wanted)] if comma else wanted
            new = [*raw[:index], option, *values, *raw[end:]]
            if new == raw:
                return False
            container[key] = new
            return True
    return False
