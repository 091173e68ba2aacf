"""A red-black tree in the style of the kernel's ``lib/rbtree.c``.

Mirrors ``struct rb_node`` / ``struct rb_root``: the node is embedded in the object it
orders (here: a subclass of :class:`RBNode`), the caller descends the tree itself and
links the new node with :func:`rb_link_node`, then :func:`rb_insert_color` rebalances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # The node type a tree links; a bare ``RBNode`` / ``RBRoot`` means ``RBNode[Any]`` links.
    N = TypeVar("N", bound="RBNode[Any]", default="RBNode[Any]")
else:
    from typing import TypeVar

    # PEP 696 defaults need Python 3.13 at run time; they only matter to the type checker.
    N = TypeVar("N", bound="RBNode")


class RBNode(Generic[N]):
    """``struct rb_node``: parent, children and colour (``rb_red`` True = red).

    Generic in the type of the object that embeds the node, so that a subclass declared
    as ``class vmap_area(RBNode["vmap_area"])`` gets links typed ``vmap_area | None``. The
    parameter is an annotation only: no cost at run time, and ``RBNode()`` still works.
    """

    __slots__ = ("rb_parent", "rb_left", "rb_right", "rb_red")

    def __init__(self) -> None:
        self.rb_parent: N | None = None
        self.rb_left: N | None = None
        self.rb_right: N | None = None
        self.rb_red = True


class RBRoot(Generic[N]):
    """``struct rb_root``; ``augment`` (optional) is the ``rb_augment_callbacks`` of an
    augmented tree: called on a node whose children changed, it recomputes the node's
    subtree data from its own and its children's (``lib/rbtree_augmented.h``)."""

    __slots__ = ("rb_node", "augment")

    def __init__(self, augment: Callable[[N], None] | None = None) -> None:
        self.rb_node: N | None = None
        self.augment = augment


def rb_augment_path(node: N | None, root: RBRoot[N]) -> None:
    """Recompute the augmented data of ``node`` and of every ancestor (propagate)."""
    aug = root.augment
    if aug is None:
        return
    while node is not None:
        aug(node)
        node = node.rb_parent


def rb_link_node(node: N, parent: N | None, root: RBRoot[N], left: bool) -> None:
    """Link ``node`` as a red leaf under ``parent`` (``left`` child or right), or as root."""
    node.rb_parent = parent
    node.rb_left = node.rb_right = None
    node.rb_red = True
    if parent is None:
        root.rb_node = node
    elif left:
        parent.rb_left = node
    else:
        parent.rb_right = node


def _rotate_left(node: N, root: RBRoot[N]) -> None:
    right = node.rb_right
    assert right is not None
    parent = node.rb_parent
    node.rb_right = right.rb_left
    if right.rb_left is not None:
        right.rb_left.rb_parent = node
    right.rb_left = node
    right.rb_parent = parent
    if parent is None:
        root.rb_node = right
    elif parent.rb_left is node:
        parent.rb_left = right
    else:
        parent.rb_right = right
    node.rb_parent = right
    aug = root.augment
    if aug is not None:
        aug(node)
        aug(right)


def _rotate_right(node: N, root: RBRoot[N]) -> None:
    left = node.rb_left
    assert left is not None
    parent = node.rb_parent
    node.rb_left = left.rb_right
    if left.rb_right is not None:
        left.rb_right.rb_parent = node
    left.rb_right = node
    left.rb_parent = parent
    if parent is None:
        root.rb_node = left
    elif parent.rb_right is node:
        parent.rb_right = left
    else:
        parent.rb_left = left
    node.rb_parent = left
    aug = root.augment
    if aug is not None:
        aug(node)
        aug(left)


def rb_insert_color(node: N, root: RBRoot[N]) -> None:
    """Rebalance after :func:`rb_link_node` (``lib/rbtree.c: rb_insert_color``).

    In an augmented tree the new leaf's path is propagated first, so every rotation
    below recomputes from correct children.
    """
    if root.augment is not None:
        rb_augment_path(node, root)
    parent = node.rb_parent
    while parent is not None and parent.rb_red:
        gparent = parent.rb_parent
        assert gparent is not None  # a red node is never the root
        if parent is gparent.rb_left:
            uncle = gparent.rb_right
            if uncle is not None and uncle.rb_red:
                uncle.rb_red = False
                parent.rb_red = False
                gparent.rb_red = True
                node = gparent
                parent = node.rb_parent
                continue
            if parent.rb_right is node:
                _rotate_left(parent, root)
                parent, node = node, parent
            parent.rb_red = False
            gparent.rb_red = True
            _rotate_right(gparent, root)
        else:
            uncle = gparent.rb_left
            if uncle is not None and uncle.rb_red:
                uncle.rb_red = False
                parent.rb_red = False
                gparent.rb_red = True
                node = gparent
                parent = node.rb_parent
                continue
            if parent.rb_left is node:
                _rotate_right(parent, root)
                parent, node = node, parent
            parent.rb_red = False
            gparent.rb_red = True
            _rotate_left(gparent, root)
        break
    assert root.rb_node is not None
    root.rb_node.rb_red = False


def _erase_color(node: N | None, parent: N | None, root: RBRoot[N]) -> None:
    while (node is None or not node.rb_red) and node is not root.rb_node:
        assert parent is not None
        if parent.rb_left is node:
            other = parent.rb_right
            assert other is not None
            if other.rb_red:
                other.rb_red = False
                parent.rb_red = True
                _rotate_left(parent, root)
                other = parent.rb_right
                assert other is not None
            if (other.rb_left is None or not other.rb_left.rb_red) and (
                other.rb_right is None or not other.rb_right.rb_red
            ):
                other.rb_red = True
                node = parent
                parent = node.rb_parent
            else:
                if other.rb_right is None or not other.rb_right.rb_red:
                    assert other.rb_left is not None
                    other.rb_left.rb_red = False
                    other.rb_red = True
                    _rotate_right(other, root)
                    other = parent.rb_right
                    assert other is not None
                other.rb_red = parent.rb_red
                parent.rb_red = False
                if other.rb_right is not None:
                    other.rb_right.rb_red = False
                _rotate_left(parent, root)
                node = root.rb_node
                break
        else:
            other = parent.rb_left
            assert other is not None
            if other.rb_red:
                other.rb_red = False
                parent.rb_red = True
                _rotate_right(parent, root)
                other = parent.rb_left
                assert other is not None
            if (other.rb_left is None or not other.rb_left.rb_red) and (
                other.rb_right is None or not other.rb_right.rb_red
            ):
                other.rb_red = True
                node = parent
                parent = node.rb_parent
            else:
                if other.rb_left is None or not other.rb_left.rb_red:
                    assert other.rb_right is not None
                    other.rb_right.rb_red = False
                    other.rb_red = True
                    _rotate_left(other, root)
                    other = parent.rb_left
                    assert other is not None
                other.rb_red = parent.rb_red
                parent.rb_red = False
                if other.rb_left is not None:
                    other.rb_left.rb_red = False
                _rotate_right(parent, root)
                node = root.rb_node
                break
    if node is not None:
        node.rb_red = False


def _replace_child(parent: N | None, old: N, new: N | None, root: RBRoot[N]) -> None:
    if parent is None:
        root.rb_node = new
    elif parent.rb_left is old:
        parent.rb_left = new
    else:
        parent.rb_right = new


def rb_erase(node: N, root: RBRoot[N]) -> None:
    """Unlink ``node`` from the tree and rebalance (``lib/rbtree.c: rb_erase``)."""
    if node.rb_left is None or node.rb_right is None:
        child = node.rb_left if node.rb_left is not None else node.rb_right
        parent = node.rb_parent
        red = node.rb_red
        if child is not None:
            child.rb_parent = parent
        _replace_child(parent, node, child, root)
    else:
        # Two children: splice in the successor (leftmost of the right subtree).
        succ = node.rb_right
        while succ.rb_left is not None:
            succ = succ.rb_left
        child = succ.rb_right
        red = succ.rb_red
        if succ.rb_parent is node:
            parent = succ
        else:
            parent = succ.rb_parent
            assert parent is not None
            parent.rb_left = child
            if child is not None:
                child.rb_parent = parent
            succ.rb_right = node.rb_right
            node.rb_right.rb_parent = succ
        succ.rb_left = node.rb_left
        node.rb_left.rb_parent = succ
        succ.rb_red = node.rb_red
        succ.rb_parent = node.rb_parent
        _replace_child(node.rb_parent, node, succ, root)
    node.rb_parent = node.rb_left = node.rb_right = None
    if root.augment is not None:
        rb_augment_path(parent, root)  # the deepest node whose subtree changed, upwards
    if not red:
        _erase_color(child, parent, root)


def rb_first(root: RBRoot[N]) -> N | None:
    n = root.rb_node
    if n is None:
        return None
    while n.rb_left is not None:
        n = n.rb_left
    return n


def rb_last(root: RBRoot[N]) -> N | None:
    n = root.rb_node
    if n is None:
        return None
    while n.rb_right is not None:
        n = n.rb_right
    return n


def rb_next(node: RBNode[N]) -> N | None:
    if node.rb_right is not None:
        n = node.rb_right
        while n.rb_left is not None:
            n = n.rb_left
        return n
    parent = node.rb_parent
    while parent is not None and node is parent.rb_right:
        node = parent
        parent = node.rb_parent
    return parent


def rb_prev(node: RBNode[N]) -> N | None:
    if node.rb_left is not None:
        n = node.rb_left
        while n.rb_right is not None:
            n = n.rb_right
        return n
    parent = node.rb_parent
    while parent is not None and node is parent.rb_left:
        node = parent
        parent = node.rb_parent
    return parent


def rb_iter(root: RBRoot[N]) -> Iterator[N]:
    """In-order iteration (``for (n = rb_first(root); n; n = rb_next(n))``)."""
    n = rb_first(root)
    while n is not None:
        yield n
        n = rb_next(n)


def rb_check(root: RBRoot[N], key: Callable[[N], int]) -> int:
    """O(n) check of every red-black invariant and of strict key order; returns the count.

    Raises AssertionError naming the first broken invariant.
    """
    top = root.rb_node
    if top is None:
        return 0
    if top.rb_parent is not None:
        raise AssertionError("rbtree: root has a parent")
    if top.rb_red:
        raise AssertionError("rbtree: root is red")
    count = 0

    def walk(n: N | None, lo: int | None, hi: int | None) -> int:
        nonlocal count
        if n is None:
            return 1
        count += 1
        k = key(n)
        if (lo is not None and k <= lo) or (hi is not None and k >= hi):
            raise AssertionError(f"rbtree: key {k:#x} out of order")
        for child in (n.rb_left, n.rb_right):
            if child is not None and child.rb_parent is not n:
                raise AssertionError(f"rbtree: bad parent pointer under key {k:#x}")
        if n.rb_red and ((n.rb_left is not None and n.rb_left.rb_red) or
                         (n.rb_right is not None and n.rb_right.rb_red)):
            raise AssertionError(f"rbtree: red node {k:#x} has a red child")
        lh = walk(n.rb_left, lo, k)
        rh = walk(n.rb_right, k, hi)
        if lh != rh:
            raise AssertionError(f"rbtree: black heights differ under {k:#x} ({lh} != {rh})")
        return lh + (0 if n.rb_red else 1)

    walk(top, None, None)
    return count
