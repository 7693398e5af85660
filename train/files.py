"""Files written whole or not at all: first under a hidden temporary name beside the target
(`.NAME.tmp<PID>`), renamed into place when complete. A run killed before the rename (SIGKILL, a
power cut) leaves its temporary file behind; the next run to the same target removes it.

    tmp = temp_path(out)                 # out.parent / f".{out.name}.tmp{os.getpid()}"
    remove_stale_temps(out)              # leftovers of runs whose process is gone
"""

import os
import re
import shutil
from pathlib import Path


def temp_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.tmp{os.getpid()}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove `.NAME.tmp<PID>` files and folders beside `target` whose process no longer runs (a
    live run's temporary file is left alone); return what was removed."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.tmp(\d+)")
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if not match or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
