"""The model's search accelerator for first-fit walks (not kernel code).

Both designs' allocators walk their areas in address order until the hole before an
area fits (2.6.28: an rbtree walk with rb_next(); 2.6.27: the vmlist). The kernel pays
for every area walked, and so does the model's clock; but the model finds where the
walk stops in O(log n) Python steps, with an rbtree augmented per node by the largest
hole in its subtree and the subtree's node count (``rb_augment`` style).

A node here is any RBNode with ``va_start``, ``va_end``, ``list_prev`` (the previous
node in address order; a list head whose ``va_end`` is 0 before the first) and the
augmented fields ``sub_gap`` (pages) and ``sub_n``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from .constants import PAGE_SHIFT
from .rbtree import RBNode, RBRoot, rb_augment_path, rb_erase, rb_insert_color, rb_link_node, rb_prev

H = TypeVar("H", bound="HoleNode[Any]")


class HoleNode(RBNode[H], Generic[H]):
    """A node of a search index: an area ``[va_start, va_end)`` in an rbtree and an
    address-ordered list (``list_prev``/``list_next``), with the augmented fields
    ``sub_gap`` (the largest hole before a node of its subtree, pages) and ``sub_n``
    (the subtree's node count). Subclasses name themselves: ``class X(HoleNode["X"])``."""

    __slots__ = ("va_start", "va_end", "list_prev", "list_next", "sub_gap", "sub_n")

    def __init__(self, va_start: int, va_end: int) -> None:
        RBNode.__init__(self)
        self.va_start = va_start
        self.va_end = va_end
        self.list_prev: H = cast(H, self)
        self.list_next: H = cast(H, self)
        self.sub_gap = 0
        self.sub_n = 1


def hole_pages(n: HoleNode[Any]) -> int:
    """The hole before ``n`` in pages: its start minus the previous node's end (for the
    first node, its start, as the list head ends at 0; only holes after a node are
    searched). In pages, most holes are small ints that CPython shares: less memory."""
    return (n.va_start - n.list_prev.va_end) >> PAGE_SHIFT


def hole_augment(n: HoleNode[Any]) -> None:
    """Recompute ``sub_gap``/``sub_n`` of ``n`` from its children (rb_augment callback)."""
    g: int = (n.va_start - n.list_prev.va_end) >> PAGE_SHIFT  # hole_pages(n)
    c = 1
    child = n.rb_left
    if child is not None:
        c += child.sub_n
        if child.sub_gap > g:
            g = child.sub_gap
    child = n.rb_right
    if child is not None:
        c += child.sub_n
        if child.sub_gap > g:
            g = child.sub_gap
    n.sub_gap = g
    n.sub_n = c


def rank(n: HoleNode[Any]) -> int:
    """Position of ``n`` in address order (0-based), from the subtree counts."""
    r = n.rb_left.sub_n if n.rb_left is not None else 0
    p = n.rb_parent
    while p is not None:
        if p.rb_right is n:
            r += 1 + (p.rb_left.sub_n if p.rb_left is not None else 0)
        n = p
        p = n.rb_parent
    return r


def next_with_hole(x: H, need: int) -> H | None:
    """The first node after ``x`` in address order whose hole before it is >= ``need``
    pages, or None."""
    t = x.rb_right
    if t is None or t.sub_gap < need:
        t = None
        n = x
        p = n.rb_parent
        while p is not None:
            if p.rb_left is n:
                if hole_pages(p) >= need:
                    return p
                r = p.rb_right
                if r is not None and r.sub_gap >= need:
                    t = r
                    break
            n = p
            p = n.rb_parent
        if t is None:
            return None
    while True:  # the leftmost node of t's subtree with a hole >= need
        left = t.rb_left
        if left is not None and left.sub_gap >= need:
            t = left
        elif hole_pages(t) >= need:
            return t
        else:
            right = t.rb_right
            assert right is not None
            t = right


def first_end_over(root: RBRoot[H], limit: int, size: int, mask: int, gap: int) -> H | None:
    """The first node whose ``ALIGN(va_end + gap) + size > limit`` (ends grow with the
    address order, so a descent finds it), or None."""
    over = None
    n = root.rb_node
    while n is not None:
        if ((n.va_end + gap + mask) & ~mask) + size > limit:
            over = n
            n = n.rb_left
        else:
            n = n.rb_right
    return over


def index_insert(root: RBRoot[H], head: H, node: H) -> None:
    """Link ``node`` into the augmented tree and, after its in-order predecessor, into
    the address-ordered list that starts at ``head`` (list first: the augment callback
    reads each node's hole from ``list_prev``)."""
    parent = None
    n = root.rb_node
    left = False
    start = node.va_start
    while n is not None:
        parent = n
        if start < n.va_start:
            n = n.rb_left
            left = True
        else:
            n = n.rb_right
            left = False
    rb_link_node(node, parent, root, left)
    prev = rb_prev(node)
    after = prev if prev is not None else head
    nxt = after.list_next
    node.list_prev = after
    node.list_next = nxt
    after.list_next = node
    nxt.list_prev = node
    rb_insert_color(node, root)
    if nxt is not head:
        rb_augment_path(nxt, root)  # the hole before the next node shrank


def index_erase(root: RBRoot[H], head: H, node: H) -> None:
    """Unlink ``node`` from the tree and the list; the next node's hole grows."""
    rb_erase(node, root)
    prev, nxt = node.list_prev, node.list_next
    prev.list_next = nxt
    nxt.list_prev = prev
    node.list_next = node.list_prev = node
    if nxt is not head:
        rb_augment_path(nxt, root)
