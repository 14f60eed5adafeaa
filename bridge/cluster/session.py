"""Reaching a Ray cluster: the optional import, the ``--cluster`` spec, connecting and leaving.

Ray is an optional extra (``pip install 'hambametal[cluster]'``) and is imported only here, and
only when a cluster render is asked for.

Specs: ``local`` starts a cluster of this machine's own for the length of the render, its node
addressed on loopback (Ray's servers still listen on every interface, guarded by Ray's token
authentication, on by default in Ray 2.60); ``auto`` joins the cluster this machine belongs
to (started with ``ray start``); ``ray://HOST:PORT`` reaches a cluster's head through the Ray
client (port 10001 by default; with token authentication the client needs
``RAY_AUTH_MODE=token`` and the cluster's token, see the README).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from engine.errors import ConfigError, RenderError

log = logging.getLogger(__name__)

INSTALL = "pip install 'hambametal[cluster]'"
SPECS = "local, auto, ray://HOST:PORT"


class ClusterError(RenderError):
    """A cluster render cannot start or finish (names the cluster, worker or song)."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ClusterError that names the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ClusterError(
            f"--cluster needs Ray, which is not installed here ({exc}): {INSTALL}"
        ) from None


def check_cluster_spec(spec: str) -> str:
    """``spec`` itself when it is one of ``local``, ``auto``, ``ray://HOST:PORT``."""
    text = spec.strip()
    if text in ("local", "auto"):
        return text
    if text.startswith("ray://"):
        host, sep, port = text.removeprefix("ray://").rpartition(":")
        if host and sep and port.isdigit() and 0 < int(port) < 65536:
            return text
    raise ConfigError(f"{spec!r} is none of {SPECS} (port 1-65535)")


# the workers' environment, wherever the cluster was started: quiet libraries
_WORKER_ENV = {"TRANSFORMERS_VERBOSITY": "error"}


def _init_arguments(spec: str) -> dict[str, Any]:
    job: dict[str, Any] = {"runtime_env": {"env_vars": dict(_WORKER_ENV)}}
    if spec == "local":
        # a cluster for this render only, its node addressed on this machine's loopback
        return {
            **job,
            "address": "local",
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
        }
    return {**job, "address": spec}


@contextmanager
def ray_session(spec: str) -> Iterator[ModuleType]:
    """Ray connected to the cluster ``spec`` names, for the length of the ``with`` block.

    A process already connected (a notebook, a test) keeps its connection and its cluster:
    the spec is then not used and nothing is shut down.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    spec = check_cluster_spec(spec)
    try:
        ray.init(**_init_arguments(spec), logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster {spec!r}: {exc}") from exc
    log.info("ray: connected to %s (%s)", spec, _describe(ray))
    try:
        yield ray
    finally:
        ray.shutdown()


def _describe(ray: ModuleType) -> str:
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return (
        f"{nodes} node{'s' if nodes != 1 else ''}, {int(resources.get('CPU', 0))} CPUs, "
        f"{int(resources.get('GPU', 0))} GPUs"
    )
