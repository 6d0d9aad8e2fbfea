"""``python -m controller``: run the external-secrets operator, or ``cleanup`` its network policies.

``--help`` works without a cluster; everything else needs one (``--kubeconfig``, else $KUBECONFIG, else the
in-cluster service account).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from controller.externalsecrets.cleanup import delete_managed_network_policies
from controller.externalsecrets.environment import Environment, Platform
from controller.externalsecrets.options import Options, parse_options
from controller.externalsecrets.platform import detect_platform, proxy_from_environment
from controller.runtime.client import Client
from controller.runtime.logging import configure_logging

if TYPE_CHECKING:
    from controller.runtime.manager import Manager

log = structlog.get_logger("controller")


async def _environment(client: Client, opts: Options) -> Environment:
    platform: Platform
    if opts.platform == "auto":
        platform = await detect_platform(client)
        log.info("detected platform", platform=platform)
    else:
        platform = opts.platform
    return Environment(
        operand_namespace=opts.operand_namespace,
        platform=platform,
        monitoring_namespaces=opts.monitoring_namespaces,
        default_proxy=proxy_from_environment(),
    )


async def build_manager(client: Client, opts: Options) -> Manager:
    """The manager with the ExternalSecretsConfig controller: network policies, the operand (images from the
    RELATED_IMAGE_* environment) and the NetworkPoliciesVerified check. Not started."""
    from controller.externalsecrets.operand.images import Images
    from controller.externalsecrets.wiring import add_to_manager, cache_scopes
    from controller.runtime.manager import Manager, ManagerOptions

    env = await _environment(client, opts)
    images = Images.from_environment()
    manager = Manager(
        client,
        ManagerOptions(
            metrics_bind_address=opts.metrics_bind_address,
            metrics_secure=opts.metrics_secure,
            metrics_cert_dir=opts.metrics_cert_dir,
            health_probe_bind_address=opts.health_probe_bind_address,
            leader_election=opts.leader_elect,
            leader_election_id=opts.leader_election_id,
            leader_election_namespace=opts.leader_election_namespace,
        ),
        cache_scopes=cache_scopes(env),
    )
    add_to_manager(manager, env, images=images)
    log.info(
        "configured manager",
        operand_namespace=env.operand_namespace,
        platform=env.platform,
        external_secrets_image=images.external_secrets,
        bitwarden_sdk_server_image=images.bitwarden_sdk_server,
    )
    return manager


async def run(opts: Options) -> int:
    client = await Client.from_kubeconfig(opts.kubeconfig)
    try:
        manager = await build_manager(client, opts)
        log.info("starting manager")
        await manager.start()
    finally:
        await client.close()
    return 0


async def cleanup(opts: Options) -> int:
    client = await Client.from_kubeconfig(opts.kubeconfig)
    try:
        report = await delete_managed_network_policies(client, [opts.operand_namespace, opts.operator_namespace])
    finally:
        await client.close()
    for where in report.deleted:
        print(f"deleted networkpolicy {where}")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if not report.deleted and not report.failed:
        print("no managed network policies found")
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    configure_logging(opts.log_level, opts.log_format)
    try:
        return asyncio.run(cleanup(opts) if opts.command == "cleanup" else run(opts))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
