"""Write (or, with --check, verify) the ExternalSecretsConfig CRD generated from the API models.

python hack/gen_crd.py            # regenerate config/crd/bases/operator.openshift.io_externalsecretsconfigs.yaml
python hack/gen_crd.py --check    # exit 1 when that file is missing or stale (make verify, CI)
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, not only as `python -m hack.gen_crd`
    sys.path.insert(0, str(ROOT))

from api.v1alpha1.crd import render_crd_yaml  # noqa: E402

CRD_PATH = ROOT / "config" / "crd" / "bases" / "operator.openshift.io_externalsecretsconfigs.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file on disk differs from the models")
    parser.add_argument("--output", type=Path, default=CRD_PATH, help="where the CRD is written (default: %(default)s)")
    args = parser.parse_args(argv)
    wanted = render_crd_yaml()
    path: Path = args.output
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == wanted:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True), wanted.splitlines(keepends=True), str(path), "generated from api/"
        )
        sys.stderr.writelines(list(diff)[:60])
        print(f"{path} is stale: run `make manifests` and commit the result", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != wanted:
        path.write_text(wanted, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
