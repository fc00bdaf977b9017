"""Builds ndintake's optional C extension, ``ndintake/core/_bytecheck``, into the wheel.

With the platform's C compiler (the one Python was built with, as
``sysconfig`` says); when there is none, or it fails, the wheel is built
without it and ndintake uses its pure-Python paths (a warning says so).
``NDINTAKE_NO_EXTENSION=1`` skips it on purpose.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("ndintake") / "core" / "_bytecheck.c"


def build_extension(root: Path) -> Path | None:
    """Compile the extension next to its source; its path, or None when it cannot be built."""
    linker = sysconfig.get_config_var("LDSHARED")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not linker or not suffix or os.environ.get("NDINTAKE_NO_EXTENSION"):
        return None
    target = root / SOURCE.with_name(f"_bytecheck{suffix}")
    command = [
        *shlex.split(linker), "-O2", "-fPIC", "-Wall", "-I", sysconfig.get_paths()["include"],
        str(root / SOURCE), "-o", str(target),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        print(f"ndintake: C extension not built ({exc}); using the pure-Python paths", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"ndintake: C extension not built; using the pure-Python paths:\n{done.stderr}", file=sys.stderr)
        return None
    return target


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = build_extension(Path(self.root))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(built.relative_to(self.root)))
