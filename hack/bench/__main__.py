"""Run every benchmark module in hack/bench (``bench_*.py``), or the ones named on the command line.

Each module exposes ``main() -> None`` (sync or async) that prints its figures and, beside them, a ratio against
a reference measured in the same run. Timing is never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
import time

import hack.bench as package


def main(argv: list[str]) -> int:
    wanted = set(argv)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_"))
    failed = 0
    for name in names:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"hack.bench.{name}")
            result = module.main()
            if inspect.iscoroutine(result):
                asyncio.run(result)
        except Exception as err:  # a broken benchmark must not hide the others
            failed += 1
            print(f"   FAILED: {type(err).__name__}: {err}", flush=True)
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
