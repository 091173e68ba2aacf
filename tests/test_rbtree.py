"""The kernel-style red-black tree (mm/rbtree.py) against a sorted list."""

from __future__ import annotations

import bisect
import random

import pytest

from vmapsim.mm.rbtree import (
    RBNode,
    RBRoot,
    rb_check,
    rb_erase,
    rb_first,
    rb_insert_color,
    rb_iter,
    rb_last,
    rb_link_node,
    rb_next,
    rb_prev,
)


class Item(RBNode):
    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key


def key(n: RBNode) -> int:
    return n.key  # type: ignore[attr-defined]


def insert(root: RBRoot, item: Item) -> None:
    """The kernel idiom: descend, rb_link_node, rb_insert_color."""
    parent = None
    n = root.rb_node
    left = False
    while n is not None:
        parent = n
        left = item.key < n.key  # type: ignore[attr-defined]
        n = n.rb_left if left else n.rb_right
    rb_link_node(item, parent, root, left)
    rb_insert_color(item, root)


def keys_inorder(root: RBRoot) -> list[int]:
    return [key(n) for n in rb_iter(root)]


def keys_backwards(root: RBRoot) -> list[int]:
    out = []
    n = rb_last(root)
    while n is not None:
        out.append(key(n))
        n = rb_prev(n)
    return out


def build(keys: list[int]) -> tuple[RBRoot, dict[int, Item]]:
    root = RBRoot()
    items = {}
    for k in keys:
        items[k] = Item(k)
        insert(root, items[k])
    return root, items


def test_empty_tree() -> None:
    root = RBRoot()
    assert rb_first(root) is None and rb_last(root) is None
    assert rb_check(root, key) == 0
    assert list(rb_iter(root)) == []


@pytest.mark.parametrize("seed", range(6))
def test_random_insert_erase_against_sorted_list(seed: int) -> None:
    rng = random.Random(seed)
    root = RBRoot()
    ref: list[int] = []
    items: dict[int, Item] = {}
    for _ in range(600):
        if ref and rng.random() < 0.45:
            k = rng.choice(ref)
            rb_erase(items.pop(k), root)
            ref.remove(k)
        else:
            k = rng.randrange(10_000)
            if k in items:
                continue
            items[k] = Item(k)
            insert(root, items[k])
            bisect.insort(ref, k)
        assert rb_check(root, key) == len(ref)
        assert keys_inorder(root) == ref
        if ref:
            assert key(rb_first(root)) == ref[0]  # type: ignore[arg-type]
            assert key(rb_last(root)) == ref[-1]  # type: ignore[arg-type]
    assert keys_backwards(root) == ref[::-1]


def test_next_prev_of_every_node() -> None:
    keys = random.Random(7).sample(range(1000), 200)
    root, items = build(keys)
    ref = sorted(keys)
    for i, k in enumerate(ref):
        nxt = rb_next(items[k])
        prv = rb_prev(items[k])
        assert (key(nxt) if nxt else None) == (ref[i + 1] if i + 1 < len(ref) else None)
        assert (key(prv) if prv else None) == (ref[i - 1] if i else None)


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sequential_inserts_stay_balanced(order: str) -> None:
    # The allocator inserts mostly increasing addresses: the tree must stay O(log n) deep.
    keys = list(range(4096))
    if order == "descending":
        keys.reverse()
    root, items = build(keys)
    assert rb_check(root, key) == 4096

    def depth(n: RBNode | None) -> int:
        return 0 if n is None else 1 + max(depth(n.rb_left), depth(n.rb_right))

    assert depth(root.rb_node) <= 2 * 13  # 2*log2(n+1) bound of a red-black tree
    for k in keys[::2]:
        rb_erase(items[k], root)
    assert rb_check(root, key) == 2048
    assert depth(root.rb_node) <= 2 * 12


def test_erase_clears_links_and_last_node_empties_tree() -> None:
    root, items = build([5, 3, 8])
    for k in (3, 8, 5):
        n = items[k]
        rb_erase(n, root)
        assert n.rb_parent is None and n.rb_left is None and n.rb_right is None
    assert root.rb_node is None


# --- rb_check must catch corrupted trees ----------------------------------------------
def _tree() -> tuple[RBRoot, dict[int, Item]]:
    root, items = build(list(range(1, 16)))
    rb_check(root, key)
    return root, items


def test_check_catches_red_root() -> None:
    root, _ = _tree()
    root.rb_node.rb_red = True  # type: ignore[union-attr]
    with pytest.raises(AssertionError, match="root is red"):
        rb_check(root, key)


def test_check_catches_red_red() -> None:
    root, _ = _tree()
    # find a black node with a red-capable child and paint both red
    for n in rb_iter(root):
        if n.rb_parent is not None and n.rb_parent.rb_parent is not None and n.rb_left is not None:
            n.rb_red = True
            n.rb_left.rb_red = True
            break
    with pytest.raises(AssertionError, match="red|black"):
        rb_check(root, key)


def test_check_catches_red_red_exactly() -> None:
    # a hand-built tree: black root, red child, red grandchild (black heights equal)
    root = RBRoot()
    a, b, c = Item(2), Item(1), Item(0)
    rb_link_node(a, None, root, False)
    rb_link_node(b, a, root, True)
    rb_link_node(c, b, root, True)
    a.rb_red, b.rb_red, c.rb_red = False, True, True
    d = Item(3)
    rb_link_node(d, a, root, False)
    d.rb_red = False
    with pytest.raises(AssertionError, match="red node .* has a red child"):
        rb_check(root, key)


def test_check_catches_wrong_order() -> None:
    root, items = _tree()
    items[1].key, items[15].key = 15, 1
    with pytest.raises(AssertionError, match="out of order"):
        rb_check(root, key)


def test_check_catches_duplicate_key() -> None:
    root, items = _tree()
    items[7].key = items[6].key
    with pytest.raises(AssertionError, match="out of order"):
        rb_check(root, key)


def test_check_catches_black_height() -> None:
    root, _ = _tree()
    # paint one black leaf red whose parent is black (no red-red) -> heights differ
    for n in rb_iter(root):
        if (n.rb_left is None and n.rb_right is None and not n.rb_red
                and n.rb_parent is not None and not n.rb_parent.rb_red):
            n.rb_red = True
            break
    else:  # pragma: no cover - the 15-node tree always has one
        pytest.fail("no candidate leaf")
    with pytest.raises(AssertionError, match="black heights differ"):
        rb_check(root, key)


def test_check_catches_bad_parent_pointer() -> None:
    root, items = _tree()
    n = root.rb_node.rb_left  # type: ignore[union-attr]
    assert n is not None and n.rb_left is not None
    n.rb_left.rb_parent = root.rb_node
    with pytest.raises(AssertionError, match="parent"):
        rb_check(root, key)
