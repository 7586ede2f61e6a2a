"""ItemTable: ids and metadata by number, overwrites, drops, compaction, byte order of ids."""

from __future__ import annotations

import numpy as np

from service.item_table import ItemTable, meta_bytes


def _held(table: ItemTable) -> dict[int, tuple[str, dict]]:
    nums = table.nums()
    ptrs, records = table.locate(nums)
    return {
        n: (records.id(p), records.metadata(p))
        for n, p in zip(nums.tolist(), ptrs.tolist(), strict=True)
    }


def test_matches_a_dict_through_writes_drops_and_compactions() -> None:
    rng = np.random.RandomState(0)
    table = ItemTable()
    expect: dict[int, tuple[str, dict]] = {}
    for step in range(300):
        if step % 5 == 4 and expect:
            gone = rng.choice(list(expect), size=min(len(expect), 20), replace=False).tolist()
            table.drop([*gone, 10**6])  # one it never held
            for n in gone:
                del expect[n]
        else:
            nums = [int(n) for n in rng.randint(-50, 3000, size=40)]  # ahead and behind
            pad = "x" * int(rng.choice([0, 8180, 8200]))  # metadata past 8,191 bytes too
            rows = {
                n: (f"é{n}-{step}" * int(rng.randint(1, 4)), {"s": step, "p": pad}) for n in nums
            }
            table.put(nums, [rows[n][0] for n in nums], [meta_bytes(rows[n][1]) for n in nums])
            expect.update(rows)
        assert table.count == len(expect)
    assert _held(table) == expect
    assert table.nbytes() < 3 * sum(len(i) + len(m["p"]) + 30 for i, m in expect.values())


def test_unknown_numbers_and_ids_in_byte_order() -> None:
    table = ItemTable()
    ids = ["b", "a", "\uffff", "\U0001f600", "ab", "\U0001f600" * 256]  # 1,024 bytes
    table.put([5, 6, 7, 8, 9, 10], ids, [b"{}"] * 6)
    ptrs, records = table.locate(np.asarray([4, 5, 9, 1000, -3], np.int64))
    assert ptrs[0] == ptrs[3] == ptrs[4] == -1 and records.id(int(ptrs[2])) == "ab"
    ptrs, records = table.locate(np.arange(5, 11))
    by_bytes = sorted(ptrs.tolist(), key=records.key)
    assert [records.id(p) for p in by_bytes] == sorted(ids)  # UTF-8 order is code-point order
    assert table.get(1) is None and table.get(8) is not None
