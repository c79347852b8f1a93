"""Deploy CHOM under load and count what the clients saw.

A local target (deploy.sh with CHOM_SERVICE_MANAGER=local, real gunicorn, Celery, PostgreSQL and
Redis, as in tests/deploy), a first deploy, then DEPLOYS deploys of new commits and one release
that fails after the switch (rolled back), each while a request loop hits /health and
/api/v1/tenant at RATE requests/s. Prints failed requests, deploy and rollback durations.

    .venv/bin/python bench/deploy_downtime.py [--deploys 3] [--rate 20]
"""

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy import harness  # noqa: E402


def under_load(target: harness.Target, token: str, rate: float, *args: str) -> tuple:
    loop = harness.RequestLoop(target.url, token, rate=rate)
    loop.start()
    try:
        result = target.deploy(*args)
    finally:
        loop.stop()
    return result, loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20)
    options = parser.parse_args()
    reason = harness.unreachable_services()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    with tempfile.TemporaryDirectory(prefix="chom-bench-deploy-") as tmp:
        base = Path(tmp)
        database = harness.create_database()
        target = harness.Target(
            root=base / "chom",
            repo=harness.make_source_repo(base / "src"),
            database=database,
            redis_db=10 + secrets.randbelow(5),  # 10-14: tests/journeys claims 15, 8 or 7
            wheels=harness.wheelhouse(),
        )
        failed = 0
        try:
            first = target.deploy()
            assert first.returncode == 0, first.output
            print(f"first deploy (builds the virtualenv): {first.seconds:.1f}s")
            owner = ("--owner-email", "owner@bench.test")
            created = target.manage("create_tenant", "bench", "--tier", "enterprise", *owner)
            token = created.strip().splitlines()[-1]
            for n in range(options.deploys):
                harness.commit(target.repo, f"bench release {n}")
                result, loop = under_load(target, token, options.rate)
                failed += len(loop.failures)
                status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
                print(f"deploy {n + 1}: {status} in {result.seconds:.1f}s; {loop.summary()}")
            edits = {"chom/celery.py": harness.BROKEN_WORKER}
            sha = harness.commit(target.repo, "broken worker", branch="bench-broken", edits=edits)
            result, loop = under_load(target, token, options.rate, "--ref", sha)
            failed += len(loop.failures)
            print(
                f"bad release: exit {result.returncode}, rolled back in {result.rollback_seconds()}s "
                f"(whole run {result.seconds:.1f}s); {loop.summary()}"
            )
            for failure in loop.failures[:10]:
                print(f"  {failure}")
        finally:
            target.stop()
            harness.drop_database(database)
        print(f"failed requests in total: {failed}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
