"""``python -m controller cleanup``: delete every NetworkPolicy the operator manages, before a downgrade.

The proposal tells administrators to delete the policies by hand before downgrading to an operator version that
does not know them (they would otherwise cut the old operand off). This does it safely: only policies with our
managed-by label AND an eso-sys-/eso-user- name are deleted, in the operand and operator namespaces; unlabelled
or foreign policies are never touched. Each delete is guarded by the object's uid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.externalsecrets import constants as c
from controller.externalsecrets.parts.networkpolicies import is_managed
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.resources import NETWORKPOLICIES


@dataclass
class CleanupReport:
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def delete_managed_network_policies(client: Client, namespaces: Iterable[str]) -> CleanupReport:
    """Delete our policies in ``namespaces``; report what was deleted and what failed (never raises for one)."""
    report = CleanupReport()
    for ns in dict.fromkeys(namespaces):
        try:
            items = (await client.list_all(NETWORKPOLICIES, ns, label_selector=c.MANAGED_SELECTOR)).get("items") or []
        except errors.NotFound:
            continue
        except errors.ApiError as err:
            report.failed.append(f"{ns}: list: {err.message}")
            continue
        for policy in items:
            if not is_managed(policy):
                continue
            meta = policy["metadata"]
            where = f"{ns}/{meta['name']}"
            try:
                await client.delete(NETWORKPOLICIES, meta["name"], ns, preconditions={"uid": meta["uid"]})
            except errors.NotFound:
                continue
            except errors.ApiError as err:
                report.failed.append(f"{where}: {err.message}")
                continue
            report.deleted.append(where)
    return report
