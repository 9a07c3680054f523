"""`python -m gptlab ...` (and `torchrun -m gptlab ...`) run the same CLI as `gptlab ...`."""

from gptlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
