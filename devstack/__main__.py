"""`python -m devstack [--host H] [--port N]`: what `make demo` runs (see devstack.demo)."""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from devstack import preflight

ROOT = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    return parser.parse_args()


def main() -> int:
    args = _parse()
    # Before anything else: a missing prerequisite is one sentence, never a traceback midway.
    problem = preflight.main()
    if problem:
        return problem
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chom.settings.local")
    import django

    django.setup()
    from django.conf import settings

    from chom.services import staff_token_create
    from devstack.demo import start_demo

    if not settings.CHOM_LOCAL_PROVIDER:
        print("The demo needs the local VPS provider: run it as `make demo` (sets CHOM_LOCAL_PROVIDER=1).")
        return 2
    base = f"http://{args.host}:{args.port}"
    demo = start_demo(
        Path(settings.VAR_DIR),
        bridge=settings.LOCAL_FLEET_BRIDGE,
        subnet=settings.LOCAL_FLEET_SUBNET,
        chom_url=base,
    )
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for line in demo.description:
            print(f"demo: {line}", flush=True)
        stack = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_stack", "--host", args.host, "--port", args.port],
            env={**os.environ, **demo.env},
        )
        token = staff_token_create(email="demo@localhost").plaintext
        print(
            "demo staff token (new on every start):\n"
            f"  export TOKEN={token}\n"
            f"  curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n"
            f'    -d \'{{"name": "demo1", "provider": "local", "kind": "shared"}}\' {base}/api/v1/vps',
            flush=True,
        )
        while not stopping and stack.poll() is None:
            try:
                stack.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=60)
        return stack.returncode or 0
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
