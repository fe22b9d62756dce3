"""`python -m gpuprov.lab demo|clean|box|hardware|inventory` (make demo, demo-clean, lab-box)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpuprov.errors import GpuprovError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuprov.lab", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="the README's main job on a Vagrant lab (make demo)")
    sub.add_parser("clean", help="destroy the VMs, remove the box and the lab dir")
    box = sub.add_parser("box", help="build and add the local box gpuprov/debian12-local")
    box.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("hardware", help="write the simulated GPU hardware the Vagrantfile installs")
    inv = sub.add_parser("inventory", help="inventory + known_hosts from the running lab")
    inv.add_argument("-o", "--output", type=Path, default=Path("inventories/vagrant.yaml"))
    args = parser.parse_args(argv)

    from gpuprov.lab.vagrant import LabSettings

    settings = LabSettings.from_env()
    try:
        if args.cmd == "demo":
            from gpuprov.lab.demo import Demo

            Demo(settings).run()
        elif args.cmd == "clean":
            from gpuprov.lab.demo import clean

            clean(settings)
        elif args.cmd == "box":
            from gpuprov.lab.box import add_box, build_box

            built = build_box(force=args.force)
            print(f"{'built' if built.built else 'reused'} {built.file}")
            print(f"{'added' if add_box(built) else 'already added'}: {built.name}")
        elif args.cmd == "hardware":
            from gpuprov.lab.demo import write_hardware

            for path in write_hardware(settings.dir / "hardware"):
                print(path)
        elif args.cmd == "inventory":
            from gpuprov.lab.inventory import write_inventory

            path, hosts = write_inventory(settings, args.output)
            print(f"wrote {path} ({len(hosts)} hosts; host keys in {settings.dir / 'known_hosts'})")
    except GpuprovError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
