"""Start the GOCACHEPROG program under `python -I -S` (see command.py): put the directory that holds the
gocaas package first on sys.path, then run gocaas.cache.prog. Only for that use; not imported."""

import sys

if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 3)[0])  # <root>/gocaas/cache/launch.py → <root>
    from gocaas.cache.prog import main

    sys.exit(main())
