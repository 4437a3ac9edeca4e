"""The shipped controller manifest, adapted to a sandbox, so that a rehearsal runs `slots
controller` as a pod with its service account's in-cluster credentials, as in a cluster.

Only what must differ in the sandbox changes: the `slots.yaml` ConfigMap (the deploy Job's, with
the sandbox's loopback endpoints), one replica, a free metrics port on loopback (the sandbox's pods
share the host's network). The ServiceAccount, Role, RoleBinding and the rest stay as shipped.

    python -m gx10slots.sandbox.rehearsal SLOTS_YAML CONTROLLER_YAML JOB_YAML | kubectl apply -f -
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def controller_manifest(
    controller_yaml: str, job_yaml: str, slots_yaml: str, *, report_dir: str = "/reports"
) -> list[dict[str, Any]]:
    """The objects to apply: the ConfigMap first, then the controller's own objects."""
    docs = [d for d in yaml.safe_load_all(controller_yaml) if d]
    config_map = next(d for d in yaml.safe_load_all(job_yaml) if d and d["kind"] == "ConfigMap")
    config = yaml.safe_load(slots_yaml)
    config.setdefault("smoke", {})["report_dir"] = report_dir
    config_map["data"]["slots.yaml"] = yaml.safe_dump(config)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["args"] = ["controller", "--metrics-addr=127.0.0.1:0"]
    return [config_map, *docs]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    try:
        slots, controller, job = (Path(a).read_text() for a in argv)
        docs = controller_manifest(controller, job, slots)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"rehearsal: cannot read the manifests: {type(exc).__name__}", file=sys.stderr)
        return 2
    except (StopIteration, KeyError, TypeError, ValueError, AttributeError):
        print(
            "rehearsal: not the shipped manifests (a ConfigMap in the Job's, one Deployment with "
            "one container in the controller's)",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(yaml.safe_dump_all(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
