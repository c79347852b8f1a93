"""The local test fleet: disposable Debian 12 "VPSes" on this machine.

Each VPS is a systemd-nspawn container booted with real systemd as PID 1, living in its own
network namespace attached to a Linux bridge, on an overlayfs over a cached, read-only
debootstrap image. The bridge has no NAT and the VPSes get no default route, so they can reach
the host and each other but never the internet.

Plain Python (stdlib + subprocess), no Django: the e2e tests, the ``local`` provider and
``make demo`` all use it. Everything created carries the ``chom`` prefix so ``gc`` can find what
a crashed run left behind. Modules: ``image`` (the cached image), ``machines`` (bridge and
VPSes), ``housekeeping`` (host checks, gc), ``base`` (constants, helpers).

CLI:
    python -m fleet.localfleet image   # build (or unpack) the cached image, print path + seconds
    python -m fleet.localfleet gc      # remove leftover chom netns/mounts/processes/bridges
"""

from fleet.localfleet.base import DEFAULT_CACHE, IMAGE_PACKAGES, PREFIX, LocalFleetError
from fleet.localfleet.housekeeping import gc, host_supports_fleet
from fleet.localfleet.image import ensure_image, image_recipe_hash
from fleet.localfleet.machines import (
    LocalVps,
    Network,
    network_down,
    network_up,
    vps_create,
    vps_destroy,
    vps_is_running,
    vps_kill,
    vps_load,
    vps_start,
    vps_stop,
)

__all__ = [
    "DEFAULT_CACHE",
    "IMAGE_PACKAGES",
    "PREFIX",
    "LocalFleetError",
    "LocalVps",
    "Network",
    "ensure_image",
    "gc",
    "host_supports_fleet",
    "image_recipe_hash",
    "network_down",
    "network_up",
    "vps_create",
    "vps_destroy",
    "vps_is_running",
    "vps_kill",
    "vps_load",
    "vps_start",
    "vps_stop",
]
