"""Packed loader: windows, epoch permutation, rank sharding, resume, bad shard folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gptlab.data.loader import PackedLoader, eval_batches
from gptlab.data.shards import ShardIndex, write_token_shards
from gptlab.errors import InputError

EOT = 1000


def _stream(n: int, seed: int = 0) -> np.ndarray:
    """Documents of random tokens in [0, 1000), each preceded by EOT."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(d) for d in out) < n:
        out.append(np.concatenate([[EOT], rng.integers(0, EOT, rng.integers(5, 40))]))
    return np.concatenate(out)[:n]


@pytest.fixture
def shards(tmp_path):
    train = _stream(1203, seed=1)
    val = _stream(300, seed=2)
    # Three uneven train shards: windows straddle shard boundaries.
    write_token_shards(
        tmp_path, {"train": [train[:500], train[500:501], train[501:]], "val": [val]}, 1001, EOT
    )
    return tmp_path, train, val


def test_index_is_read_and_windows_are_shifted_slices(shards):
    folder, train, _ = shards
    info = ShardIndex.load(folder)
    assert (info.vocab_size, info.eot_id, info.dtype) == (1001, EOT, "uint16")
    assert info.tokens("train") == len(train)
    T = 16
    loader = PackedLoader(folder, "train", batch_size=4, seq_len=T, seed=3)
    order = loader._epoch_order()
    x, y = next(loader)
    assert x.shape == y.shape == (4, T) and x.dtype == torch.int64
    for row, w in enumerate(order[:4]):
        assert x[row].tolist() == train[w * T : w * T + T].tolist()
        assert y[row].tolist() == train[w * T + 1 : w * T + T + 1].tolist()


def test_an_epoch_visits_every_window_once_then_reshuffles(shards):
    folder, train, _ = shards
    T, B = 16, 5
    loader = PackedLoader(folder, "train", batch_size=B, seq_len=T, seed=0)
    n_windows = (len(train) - 1) // T
    window_of = {tuple(train[w * T : w * T + T].tolist()): w for w in range(n_windows)}
    seen = []
    for _ in range(loader.batches_per_epoch):
        x, _ = next(loader)
        seen += [window_of[tuple(row.tolist())] for row in x]
    assert len(set(seen)) == len(seen) == loader.batches_per_epoch * B
    assert set(seen) <= set(range(n_windows))
    first_epoch = loader._epoch_order().copy()
    next(loader)
    assert loader.epoch == 1
    assert not np.array_equal(first_epoch, loader._epoch_order())  # a new permutation


def test_ranks_split_the_single_process_global_batch(shards):
    folder, _, _ = shards
    single = PackedLoader(folder, "train", batch_size=6, seq_len=8, seed=5)
    ranks = [
        PackedLoader(folder, "train", batch_size=3, seq_len=8, seed=5, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for _ in range(single.batches_per_epoch + 3):  # across an epoch boundary
        x, y = next(single)
        parts = [next(r) for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert single.state_dict() == ranks[0].state_dict() == ranks[1].state_dict()


def test_resume_from_state_dict_gives_the_same_batches(shards):
    folder, _, _ = shards
    a = PackedLoader(folder, "train", batch_size=4, seq_len=8, seed=9)
    for _ in range(a.batches_per_epoch - 1):
        next(a)
    state = json.loads(json.dumps(a.state_dict()))  # it travels through train_state.json
    expected = [next(a) for _ in range(4)]  # crosses into epoch 1
    b = PackedLoader(folder, "train", batch_size=4, seq_len=8, seed=0)
    b.load_state_dict(state)
    for x, y in expected:
        bx, by = next(b)
        assert torch.equal(bx, x) and torch.equal(by, y)


def test_eval_batches_are_in_order_and_capped(shards):
    folder, _, val = shards
    batches = list(eval_batches(folder, "val", batch_size=2, seq_len=10, max_tokens=40))
    assert len(batches) == 2
    assert batches[0][0][0].tolist() == val[:10].tolist()
    assert batches[1][0][1].tolist() == val[30:40].tolist()
    again = list(eval_batches(folder, "val", batch_size=2, seq_len=10, max_tokens=40))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_bad_shard_folders_name_the_file(tmp_path):
    with pytest.raises(InputError, match="index.json"):
        ShardIndex.load(tmp_path)
    write_token_shards(tmp_path, {"train": [_stream(100)]}, 1001, EOT)
    (tmp_path / "train_0000.bin").write_bytes(b"\0" * 7)
    with pytest.raises(InputError, match="train_0000.bin.*disagrees with index.json"):
        ShardIndex.load(tmp_path)
    (tmp_path / "train_0000.bin").unlink()
    with pytest.raises(InputError, match="missing"):
        ShardIndex.load(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="expected 'gptlab-shards-v1'"):
        ShardIndex.load(tmp_path)


def test_split_smaller_than_a_batch_is_a_clear_error(tmp_path):
    write_token_shards(tmp_path, {"train": [_stream(50)]}, 1001, EOT)
    with pytest.raises(InputError, match="fewer than one global batch"):
        PackedLoader(tmp_path, "train", batch_size=8, seq_len=16)
    with pytest.raises(InputError, match="no split 'val'"):
        PackedLoader(tmp_path, "val", batch_size=1, seq_len=4)


def test_uint32_shards_for_large_vocabularies(tmp_path):
    tokens = np.array([70000, 5, 69999, 3, 70000, 1, 2, 3, 4], dtype=np.int64)
    write_token_shards(tmp_path, {"train": [tokens]}, 70001, 70000)
    assert ShardIndex.load(tmp_path).dtype == "uint32"
    x, y = next(PackedLoader(tmp_path, "train", batch_size=1, seq_len=4, shuffle=False))
    assert x.tolist() == [[70000, 5, 69999, 3]] and y.tolist() == [[5, 69999, 3, 70000]]
