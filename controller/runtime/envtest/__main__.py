"""``python -m controller.runtime.envtest --kubeconfig PATH [--port N]``: a local API server for ``make run``.

Writes the kubeconfig, prints one line ``ready`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from controller.runtime.envtest.server import ApiServer


async def serve(args: argparse.Namespace) -> None:
    server = ApiServer(host=args.host, port=args.port, bookmark_interval=args.bookmark_interval,
                       endpoint_port=args.endpoint_port)  # fmt: skip
    await server.start()
    try:
        server.write_kubeconfig(args.kubeconfig)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.runtime.envtest", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between watch BOOKMARKs")
    parser.add_argument("--endpoint-port", type=int, default=6443,
                        help="port announced in the kubernetes Service's EndpointSlice")  # fmt: skip
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
