#!/usr/bin/env python3
"""`python scripts/bench`: the benchmark (see __init__.py), under the project's .venv."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# -- bootstrap: a fresh clone needs the .venv, as scripts/demo.sh sets it up -----------------------


def _bootstrap() -> None:
    """Re-run under the project's .venv (creating it once) unless gx10slots is importable here."""
    here = Path(sys.executable).parent
    if importlib.util.find_spec("gx10slots") is not None and (here / "slots").exists():
        return
    venv = ROOT / ".venv"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "slots").exists():
        print("==> setting up .venv (first run only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", str(ROOT)], check=True)
    if Path(sys.prefix).resolve() == venv.resolve():
        raise SystemExit("bench: gx10slots is not importable from .venv; reinstall it")
    os.execv(str(python), [str(python), str(Path(__file__).resolve().parent), *sys.argv[1:]])


if __name__ == "__main__":
    _bootstrap()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # scripts/: the package
    from bench.main import main

    sys.exit(main())
