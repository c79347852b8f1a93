"""Names for the local test fleet that are unique per test run, so that two runs on one machine
never share a VPS name, network namespace or bridge."""

import os

RUN = os.getpid() % 10000


def vps_name(name: str) -> str:
    return f"{name}-{RUN}"
