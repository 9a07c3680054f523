"""The one train/test split every task and embedded corpus shares: a stable hash of a key.

A scene ("macbeth/1.1"), a chat id or a problem's text is in the test split on every machine
and run, so the tasks' held-out items (`gptlab.tasks`) and the held-out text that bits per byte
is measured on (`gptlab data prepare --source shakespeare@split=test`) are the same documents,
never trained on by SFT's embedded mixture.
"""

from __future__ import annotations

import hashlib

TEST_FRAC = 0.1  # the share of keys in the test split (every task's default)


def in_test(key: str, test_frac: float | None = None) -> bool:
    """Stable split membership: the same key is in the same split on every machine and run.

    >>> in_test("macbeth/1.1", 0.0), in_test("macbeth/1.1", 1.0)
    (False, True)
    """
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < (TEST_FRAC if test_frac is None else test_frac)


def split_of(key: str, test_frac: float | None = None) -> str:
    return "test" if in_test(key, test_frac) else "train"
