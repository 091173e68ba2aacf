"""``vmapsim designs``: the registered designs of the vmap layer, oldest kernel first."""

from __future__ import annotations

import argparse

from ..mm import designs
from ._result import print_json

NAME = "designs"
HELP = "list the designs (kernel versions of the vmap layer) the model has"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list as JSON (docs/json.md)")


def run(args: argparse.Namespace) -> int:
    infos = designs.infos()
    if args.json:
        print_json(NAME, {}, [
            {"name": i.name, "aliases": list(i.aliases), "kernel": i.kernel, "changed": i.changed,
             "commit": i.commit, "leaves_out": i.leaves_out} for i in infos], 0.0)
        return 0
    for i in infos:
        alias = f" (also: {', '.join(i.aliases)})" if i.aliases else ""
        print(f"{i.name}{alias}: {i.kernel}")
        print(f"    changed:    {i.changed}")
        print(f"    commit:     {i.commit}")
        if i.leaves_out:
            print(f"    leaves out: {i.leaves_out}")
    shorthands = ", ".join(f"{k} = {','.join(v)}" for k, v in designs.SHORTHANDS.items())
    print(f"--design takes a comma-separated list of these names or aliases; shorthand: {shorthands}")
    return 0
