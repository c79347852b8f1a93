"""python -m fleet.localfleet image|gc"""

import sys
import time

from fleet.localfleet import __doc__ as USAGE
from fleet.localfleet import ensure_image, gc


def _main(argv: list[str]) -> int:
    if argv == ["image"]:
        started = time.monotonic()
        path = ensure_image()
        print(f"{path}\n{time.monotonic() - started:.1f}s")
        return 0
    if argv == ["gc"]:
        gc()
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
