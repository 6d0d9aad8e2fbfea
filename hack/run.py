"""``make run``: run the operator locally, against your cluster or, with none, against an in-process API server.

With a reachable cluster ($KUBECONFIG, else ~/.kube/config; checked with ``GET /version``): install the CRD and
run ``python -m controller`` against it, like the Go operator's ``make run``.

Without one (or with ``--envtest``): start the in-process API server of ``controller.runtime.envtest``, write
its kubeconfig (``.envtest/kubeconfig``), install the CRD, what OLM installs in the operator namespace (the
namespace and its two NetworkPolicies from ``config/network-policy``) and the sample ExternalSecretsConfig, then
run the manager against it. envtest has no kubelet: the operand Deployments never get pods, so a stand-in marks
them available (as the integration tests do) and the configuration can reach Ready.

Ctrl-C (SIGINT) or SIGTERM stops the manager gracefully, then the API server, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python hack/run.py` puts hack/ first on the path, not the project
    sys.path.insert(0, str(ROOT))

from api.v1alpha1.crd import custom_resource_definition  # noqa: E402
from controller.externalsecrets import constants as c  # noqa: E402
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS  # noqa: E402
from controller.runtime import errors  # noqa: E402
from controller.runtime.client import Client, ClientConfig, load_config  # noqa: E402
from controller.runtime.resources import (  # noqa: E402
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    NAMESPACES,
    NETWORKPOLICIES,
    Resource,
)

JSON = dict[str, Any]


@dataclass
class Session:
    """The stop request (a signal), and whether the manager runs (then a stop is its graceful shutdown)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    supervising: bool = False


SAMPLE = ROOT / "config/samples/operator_v1alpha1_externalsecretsconfig.yaml"
OPERATOR_POLICIES = ROOT / "config/network-policy"
DEFAULT_ENVTEST_KUBECONFIG = ROOT / ".envtest/kubeconfig"
PROBE_TIMEOUT = 3.0
STOP_TIMEOUT = 45.0  # the manager's graceful shutdown takes up to 30 s
FIELD_MANAGER = "make-run"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hack/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--envtest", action="store_true", default=_env_true("RUN_ENVTEST"),
                        help="use the in-process API server even if a cluster is reachable (or RUN_ENVTEST=true)")  # fmt: skip
    parser.add_argument("--envtest-kubeconfig", default=str(DEFAULT_ENVTEST_KUBECONFIG),
                        help="where to write the in-process API server's kubeconfig (default: %(default)s)")  # fmt: skip
    parser.add_argument("--metrics-bind-address", default=":8080", help="(default: %(default)s)")
    parser.add_argument("--health-probe-bind-address", default=":8081", help="(default: %(default)s)")
    parser.add_argument("--log-level", default="info", help="(default: %(default)s)")
    parser.add_argument("manager_args", nargs="*", metavar="-- ARGS",
                        help="more flags for `python -m controller`, after --")  # fmt: skip
    return parser.parse_args(argv)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("true", "1", "yes")


def python() -> str:
    """This interpreter as the user would type it: ``.venv/bin/python`` from the project folder."""
    exe = os.path.abspath(sys.executable)
    rel = os.path.relpath(exe)
    return rel if not rel.startswith("..") else exe


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


# ---- the cluster ------------------------------------------------------------------------------------------------


def cluster_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use, when it exists."""
    path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    return path if os.path.isfile(path) else None


async def reachable(path: str) -> str | None:
    """None when the cluster of ``path`` answers ``GET /version``, else why not."""
    try:
        cfg = await load_config(path)
    except Exception as err:  # any unreadable kubeconfig means "no cluster"
        return f"cannot load {path}: {err}"
    cfg.timeout = PROBE_TIMEOUT
    client = Client(cfg)
    try:
        await client.request("GET", "/version")
    except errors.ApiError as err:
        return f"{cfg.host} does not answer: {err}"
    finally:
        await client.close()
    return None


# ---- installation --------------------------------------------------------------------------------------------------


async def create_or_update(client: Client, res: Resource, obj: JSON) -> None:
    meta = obj["metadata"]
    try:
        live = await client.get(res, meta["name"], meta.get("namespace"))
    except errors.NotFound:
        await client.create(res, obj, meta.get("namespace"))
        return
    obj = {**obj, "metadata": {**meta, "resourceVersion": live["metadata"]["resourceVersion"]}}
    await client.update(res, obj)


async def install_crd(client: Client) -> None:
    crd = custom_resource_definition()
    await create_or_update(client, CUSTOMRESOURCEDEFINITIONS, crd)
    for _ in range(100):  # Established comes with the create on envtest, within a second on a real cluster
        with contextlib.suppress(errors.ApiError):
            await client.list(EXTERNALSECRETSCONFIGS)
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the CRD {crd['metadata']['name']} is not served")


async def install_operator_namespace(client: Client) -> str:
    """What OLM installs next to the operator: its namespace and the operator-namespace NetworkPolicies."""
    policies = [yaml.safe_load(p.read_text()) for p in sorted(OPERATOR_POLICIES.glob("*.yaml"))]
    policies = [p for p in policies if isinstance(p, dict) and p.get("kind") == "NetworkPolicy"]
    namespace = policies[0]["metadata"]["namespace"]
    with contextlib.suppress(errors.Conflict):
        await client.create(NAMESPACES, {"metadata": {"name": namespace}})
    for policy in policies:
        await create_or_update(client, NETWORKPOLICIES, policy)
    return str(namespace)


async def install_sample(client: Client) -> None:
    sample = yaml.safe_load(SAMPLE.read_text())
    with contextlib.suppress(errors.Conflict):  # an existing configuration is the user's: keep it
        await client.create(EXTERNALSECRETSCONFIGS, sample)


async def mark_deployments_available(client: Client, namespace: str) -> None:
    """The kubelet and Deployment controller envtest lacks: report every operand Deployment as available."""
    while True:
        with contextlib.suppress(errors.ApiError):
            items = (await client.list(DEPLOYMENTS, namespace, label_selector=c.MANAGED_SELECTOR)).get("items") or []
            for dep in items:
                replicas = (dep.get("spec") or {}).get("replicas", 1)
                status = dep.get("status") or {}
                generation = dep["metadata"].get("generation")
                if status.get("observedGeneration") == generation and status.get("availableReplicas") == replicas:
                    continue
                dep["status"] = {
                    "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas,
                    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
                }  # fmt: skip
                with contextlib.suppress(errors.Conflict, errors.NotFound):
                    await client.update_status(DEPLOYMENTS, dep)
        await asyncio.sleep(1.0)


def busy_addresses(args: argparse.Namespace) -> list[str]:
    """The metrics and probe addresses something else listens on (a shared machine often has 8080 taken)."""
    busy = []
    for addr in (args.metrics_bind_address, args.health_probe_bind_address):
        if addr in ("", "0"):
            continue
        host, _, port = addr.rpartition(":")
        try:
            with socket.socket(socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except (OSError, ValueError):
            busy.append(addr)
    return busy


# ---- running -------------------------------------------------------------------------------------------------------


def manager_command(kubeconfig: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "controller", f"--kubeconfig={kubeconfig}",
        f"--metrics-bind-address={args.metrics_bind_address}", "--metrics-secure=false",
        f"--health-probe-bind-address={args.health_probe_bind_address}", "--leader-elect=false",
        "--log-format=console", f"--log-level={args.log_level}", *args.manager_args,
    ]  # fmt: skip


async def supervise(cmd: list[str], session: Session) -> int:
    """Run the manager until it exits or a stop is requested; then SIGINT it and wait for its graceful stop.

    The manager gets its own process group, so a Ctrl-C in the terminal reaches it once, through us, rather
    than twice (a second SIGINT tells the manager to skip its grace period).
    """
    session.supervising = True
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, process_group=0)
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(session.stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            code = waiter.result()
            say(f"the manager exited with status {code}")
            return code
        say("stopping the manager")
        proc.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(asyncio.shield(waiter), STOP_TIMEOUT)
        except TimeoutError:
            say(f"the manager did not stop within {STOP_TIMEOUT:.0f} s; killing it")
            proc.kill()
            await waiter
            return 1
        return 0 if code in (0, 130, -signal.SIGINT) else code
    finally:
        stopper.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run(args: argparse.Namespace, session: Session) -> int:
    busy = busy_addresses(args)
    if busy:
        say(f"cannot listen on {', '.join(busy)}: in use (or invalid); choose free ports, e.g.")
        print("    make run METRICS_ADDR=:18080 PROBE_ADDR=:18081", flush=True)
        return 1
    kubeconfig = None if args.envtest else cluster_kubeconfig()
    if kubeconfig is not None:
        problem = await reachable(kubeconfig)
        if problem is None:
            return await run_on_cluster(kubeconfig, args, session)
        say(f"no reachable cluster ({problem})")
    elif not args.envtest:
        say("no kubeconfig ($KUBECONFIG, ~/.kube/config)")
    return await run_on_envtest(args, session)


async def run_on_cluster(kubeconfig: str, args: argparse.Namespace, session: Session) -> int:
    client = Client(await load_config(kubeconfig))
    try:
        say(f"cluster {client.config.host} ({kubeconfig}): installing the CRD")
        await install_crd(client)
    finally:
        await client.close()
    say("running the manager; Ctrl-C stops it")
    return await supervise(manager_command(kubeconfig, args), session)


async def run_on_envtest(args: argparse.Namespace, session: Session) -> int:
    from controller.runtime.envtest import Environment

    path = os.path.abspath(args.envtest_kubeconfig)
    say("starting the in-process API server (controller.runtime.envtest)")
    env = Environment(kubeconfig_path=path, use_existing_cluster=False, kubebuilder_assets="",
                      bookmark_interval=60.0)  # fmt: skip
    await asyncio.to_thread(env.launch)
    client: Client | None = None
    stand_in: asyncio.Task[None] | None = None
    try:
        assert env.client_config is not None
        client = Client(ClientConfig(host=env.client_config.host, ca_file=env.client_config.ca_file,
                                     token=env.client_config.token))  # fmt: skip
        await install_crd(client)
        operator_ns = await install_operator_namespace(client)
        await install_sample(client)
        stand_in = asyncio.create_task(mark_deployments_available(client, c.DEFAULT_OPERAND_NAMESPACE))
        say(f"API server {env.url}; kubeconfig {path}")
        say(f"installed the CRD, the {operator_ns} namespace with its NetworkPolicies, and {SAMPLE.relative_to(ROOT)}")
        say("look at what the operator does:")
        print(f"    kubectl --kubeconfig {path} get networkpolicies -A", flush=True)
        print(f"    kubectl --kubeconfig {path} get externalsecretsconfigs cluster -o yaml", flush=True)
        print(f"    {python()} -m controller.netpol verify --kubeconfig {path}", flush=True)
        say("running the manager; Ctrl-C stops it and the API server")
        return await supervise(manager_command(path, args), session)
    finally:
        if stand_in is not None:
            stand_in.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stand_in
        if client is not None:
            await client.close()
        await asyncio.to_thread(env.stop_sync)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # its token and CA die with the server
        say("stopped")


async def main_async(args: argparse.Namespace) -> int:
    session = Session()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, session.stop.set)
    task = asyncio.ensure_future(run(args, session))
    stopper = asyncio.ensure_future(session.stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not session.supervising:
            task.cancel()  # stopped during set-up; once supervising, the manager is stopped gracefully instead
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        stopper.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 0
    except (errors.ApiError, RuntimeError, OSError) as err:
        say(f"failed: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
