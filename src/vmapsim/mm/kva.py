"""Linux 6.1's "global kva allocator": the vmap_area trees of mm/vmalloc.c as pure data
structures (no Kernel, no machine, no locks).

A tree is a :class:`vmap_tree`: the kernel's ``(struct rb_root, struct list_head)`` pair
(``free_vmap_area_root`` + ``free_vmap_area_list``, ``vmap_area_root`` +
``vmap_area_list``, ``purge_vmap_area_root`` + ``purge_vmap_area_list``) bundled with a
node count. The functions keep the kernel's names and argument order, with the tree in
the place of the ``root``/``head`` arguments. The free tree is augmented: every node
carries ``subtree_max_size``, the largest ``va_size()`` in its subtree. The RBRoot's
augment callback recomputes it exactly at every structural change, so the values are the
true maxima (what the kernel's early-stopping propagation maintains as well); the tree
SHAPE is lib/rbtree.c's, since rbtree.py ports ``__rb_insert``, ``__rb_erase_augmented``
and ``____rb_erase_color`` case for case.

Cost accounting: every function that walks the tree adds the number of nodes it read to
``tree.visits`` (a plain int; the caller reads it and resets it when it likes). One visit
is one ``struct vmap_area`` the kernel dereferences while searching, counted per step, so
a node read again on the way back up (the backtrack of ``find_vmap_lowest_match``) counts
again. Added to ``visits``: ``find_va_links`` (so every insert and merge), ``find_vmap_lowest_match``,
``find_vmap_area__``, ``find_vmap_area_exceed_addr``, ``pvm_find_va_enclose_addr``,
``pvm_determine_end_from_reverse`` (list entries) and ``find_vmap_lowest_linear_match``.
Not added: the rebalancing of rb_insert_color/rb_erase, ``augment_tree_propagate_from``
and the neighbour checks of the merge: they touch the ancestors (or the in-order
neighbours, which are ancestors of the insertion slot) of a node that the same operation
has just reached by a counted descent, i.e. lines already read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import IntEnum
from typing import Any, TypeAlias

from .constants import PAGE_SIZE
from .rbtree import RBNode, RBRoot, rb_check, rb_erase, rb_insert_color, rb_iter, rb_link_node

__all__ = [
    "FL_FIT_TYPE",
    "LE_FIT_TYPE",
    "NE_FIT_TYPE",
    "NOTHING_FIT",
    "RE_FIT_TYPE",
    "ULONG_MAX",
    "adjust_va_to_fit_type",
    "alloc_vmap_area__",
    "augment_tree_propagate_from",
    "check_augment",
    "check_count",
    "check_free_tree",
    "check_list",
    "check_merged",
    "check_no_overlap",
    "check_rbtree",
    "check_tree",
    "classify_va_fit_type",
    "compute_subtree_max_size",
    "find_va_links",
    "find_vmap_area__",
    "find_vmap_area_exceed_addr",
    "find_vmap_lowest_linear_match",
    "find_vmap_lowest_match",
    "fit_type",
    "free_vmap_area_rb_augment_cb",
    "get_subtree_max_size",
    "get_va_next_sibling",
    "insert_vmap_area",
    "insert_vmap_area_augment",
    "is_within_this_va",
    "link_va",
    "link_va__",
    "link_va_augment",
    "list_empty",
    "merge_or_add_vmap_area",
    "merge_or_add_vmap_area__",
    "merge_or_add_vmap_area_augment",
    "pvm_determine_end_from_reverse",
    "pvm_find_va_enclose_addr",
    "unlink_va",
    "unlink_va__",
    "unlink_va_augment",
    "va_size",
    "vmap_area",
    "vmap_init_free_space",
    "vmap_tree",
]

ULONG_MAX = (1 << 64) - 1


class vmap_area(RBNode["vmap_area"]):
    """``struct vmap_area``: ``[va_start, va_end)`` (end exclusive), its rb_node (the
    inherited RBNode fields) and its ``list`` (``list_prev``/``list_next``).

    A list head is a sentinel vmap_area whose links point at itself when empty; an
    unlinked area is self-linked too (``list_del_init``), see :func:`list_empty`.
    """

    # 6.1 overlays subtree_max_size and vm in a union; two slots here, so a checker can
    # tell a stale vm from a size.
    __slots__ = ("va_start", "va_end", "subtree_max_size", "vm", "list_prev", "list_next",
                 "flags", "private")

    def __init__(self, va_start: int = 0, va_end: int = 0) -> None:
        # RBNode.__init__ inlined: a vmap_area is made per NE split and per busy area.
        self.rb_parent = None
        self.rb_left = None
        self.rb_right = None
        self.rb_red = True
        self.va_start = va_start
        self.va_end = va_end
        self.subtree_max_size = 0
        self.vm: Any = None
        self.list_prev: vmap_area = self
        self.list_next: vmap_area = self
        self.flags = 0  # 6.1 has no such field (6.3 added it); 0 here
        self.private: Any = None  # model's own: e.g. the vmap_block owning this area

    def __repr__(self) -> str:
        return f"vmap_area({self.va_start:#x}-{self.va_end:#x})"


def va_size(va: vmap_area) -> int:
    return va.va_end - va.va_start


def list_empty(va: vmap_area) -> bool:
    """``list_empty(&va->list)``: True for an empty head or an unlinked area."""
    return va.list_next is va


def get_subtree_max_size(node: vmap_area | None) -> int:
    return 0 if node is None else node.subtree_max_size


def compute_subtree_max_size(va: vmap_area) -> int:
    """max(va_size(va), left's and right's subtree_max_size)."""
    m = va.va_end - va.va_start
    n = va.rb_left
    if n is not None and n.subtree_max_size > m:
        m = n.subtree_max_size
    n = va.rb_right
    if n is not None and n.subtree_max_size > m:
        m = n.subtree_max_size
    return m


def free_vmap_area_rb_augment_cb(va: vmap_area) -> None:
    """The augment callback of the free tree (``RB_DECLARE_CALLBACKS_MAX(...,
    subtree_max_size, va_size)``): recompute ``va`` from its children."""
    m = va.va_end - va.va_start
    n = va.rb_left
    if n is not None and n.subtree_max_size > m:
        m = n.subtree_max_size
    n = va.rb_right
    if n is not None and n.subtree_max_size > m:
        m = n.subtree_max_size
    va.subtree_max_size = m


class vmap_tree:
    """An rbtree of vmap_areas keyed by va_start plus its address-sorted list.

    ``root`` is the rb_root, ``head`` the list head (a sentinel vmap_area), ``nr`` the
    number of areas linked, ``visits`` the walk counter (module docstring), ``last_fit``
    the fit type the last :func:`adjust_va_to_fit_type` applied (NOTHING_FIT when it
    failed; it tells the caller whether an NE split consumed the spare it offered), and
    ``warnings`` the kernel's WARN()s, as messages, in order.
    """

    __slots__ = ("root", "head", "nr", "visits", "last_fit", "warnings", "augmented")

    def __init__(self, augment: bool = False) -> None:
        self.augmented = augment
        self.root: RBRoot[vmap_area] = RBRoot(free_vmap_area_rb_augment_cb if augment else None)
        self.head = vmap_area()
        self.nr = 0
        self.visits = 0
        self.last_fit = 0
        self.warnings: list[str] = []

    def __len__(self) -> int:
        return self.nr

    def __iter__(self) -> Iterator[vmap_area]:
        """``list_for_each_entry``: the areas in address order (not counted in visits)."""
        head = self.head
        va = head.list_next
        while va is not head:
            nxt = va.list_next
            yield va
            va = nxt


# --- linking and unlinking ------------------------------------------------------------
def find_va_links(va: vmap_area, root: vmap_tree, from_: vmap_area | None = None
                  ) -> tuple[vmap_area | None, bool] | None:
    """Descend to the leaf slot for ``va`` from the root, or from the node ``from_``
    (then ``root`` serves only for the counters, as the kernel passes NULL).

    Returns ``(parent, left)``: the slot is ``parent``'s left (True) or right child, or
    ``(None, False)`` for the root of an empty tree (the kernel returns the link pointer).
    On an overlap, WARNs "vmalloc bug: ... overlaps with ..." and returns None.
    """
    if from_ is None:
        n = root.root.rb_node
        if n is None:
            return None, False
    else:
        n = from_
    start = va.va_start
    end = va.va_end
    visits = 0
    while True:
        visits += 1
        if end <= n.va_start:
            nxt = n.rb_left
            left = True
        elif start >= n.va_end:
            nxt = n.rb_right
            left = False
        else:
            root.visits += visits
            root.warnings.append(f"vmalloc bug: {start:#x}-{end:#x} overlaps with "
                                 f"{n.va_start:#x}-{n.va_end:#x}")
            return None
        if nxt is None:
            root.visits += visits
            return n, left
        n = nxt


def get_va_next_sibling(parent: vmap_area | None, left: bool) -> vmap_area | None:
    """The list entry that will follow an area linked at the slot (the head if none);
    None for an empty tree."""
    if parent is None:
        return None
    return parent if left else parent.list_next


def link_va__(va: vmap_area, root: vmap_tree, parent: vmap_area | None, left: bool,
              augment: bool) -> None:
    """``__link_va``: link at the slot from :func:`find_va_links`, rebalance, and put
    ``va`` into the list after its in-order predecessor."""
    # list_add(&va->list, head) with head = the future predecessor
    if parent is None:
        prev = root.head
    elif left:
        prev = parent.list_prev
    else:
        prev = parent
    nxt = prev.list_next
    va.list_prev = prev
    va.list_next = nxt
    prev.list_next = va
    nxt.list_prev = va
    rb_link_node(va, parent, root.root, left)
    # The kernel zeroes subtree_max_size after rb_insert_augmented() and lets the
    # caller's propagation fix the path; the augment callback here keeps it exact.
    rb_insert_color(va, root.root)
    root.nr += 1


def link_va(va: vmap_area, root: vmap_tree, parent: vmap_area | None, left: bool) -> None:
    link_va__(va, root, parent, left, False)


def link_va_augment(va: vmap_area, root: vmap_tree, parent: vmap_area | None, left: bool) -> None:
    link_va__(va, root, parent, left, True)


def unlink_va__(va: vmap_area, root: vmap_tree, augment: bool) -> None:
    """``__unlink_va``: rb_erase (augmented in the free tree) and list_del_init."""
    if va.list_next is va:  # the kernel's WARN_ON(RB_EMPTY_NODE(&va->rb_node))
        root.warnings.append(f"unlink_va: {va.va_start:#x}-{va.va_end:#x} is not linked")
        return
    rb_erase(va, root.root)
    prev = va.list_prev
    nxt = va.list_next
    prev.list_next = nxt
    nxt.list_prev = prev
    va.list_prev = va.list_next = va
    root.nr -= 1


def unlink_va(va: vmap_area, root: vmap_tree) -> None:
    unlink_va__(va, root, False)


def unlink_va_augment(va: vmap_area, root: vmap_tree) -> None:
    unlink_va__(va, root, True)


def augment_tree_propagate_from(va: vmap_area) -> None:
    """Recompute ``subtree_max_size`` from ``va`` towards the root, stopping at the first
    node whose value does not change (``free_vmap_area_rb_augment_cb_propagate(&va->rb_node,
    NULL)``); needed after ``va``'s own size changed."""
    n: vmap_area | None = va
    while n is not None:
        m = n.va_end - n.va_start
        c = n.rb_left
        if c is not None and c.subtree_max_size > m:
            m = c.subtree_max_size
        c = n.rb_right
        if c is not None and c.subtree_max_size > m:
            m = c.subtree_max_size
        if n.subtree_max_size == m:
            return
        n.subtree_max_size = m
        n = n.rb_parent


def insert_vmap_area(va: vmap_area, root: vmap_tree) -> None:
    """Link ``va`` into a plain (busy) tree; nothing happens on an overlap but the WARN."""
    links = find_va_links(va, root, None)
    if links is not None:
        link_va__(va, root, links[0], links[1], False)


def insert_vmap_area_augment(va: vmap_area, from_: vmap_area | None, root: vmap_tree) -> None:
    """Link ``va`` into the free tree, searching its slot from ``from_`` when given (6.1's
    NE split passes the node it just shrank), then propagate from ``va``."""
    links = find_va_links(va, root, from_)
    if links is not None:
        link_va__(va, root, links[0], links[1], True)
        augment_tree_propagate_from(va)


def merge_or_add_vmap_area__(va: vmap_area, root: vmap_tree, augment: bool) -> vmap_area | None:
    """``__merge_or_add_vmap_area``: coalesce ``va`` with the area after it and/or the one
    before it, else link it. Returns the area that now holds the range (None on overlap).

    Merging with next keeps the NEXT object (its va_start moves down); with prev keeps
    PREV (its va_end moves up); with both, next is unlinked first and prev absorbs all.
    A merged ``va`` is dropped (the kernel frees it), the caller must not reuse it.
    """
    links = find_va_links(va, root, None)
    if links is None:
        return None
    parent, left = links
    merged = False
    if parent is not None:  # else an empty tree: just insert
        head = root.head
        nxt = parent if left else parent.list_next
        if nxt is not head and nxt.va_start == va.va_end:
            nxt.va_start = va.va_start
            va = nxt
            merged = True
        prev = nxt.list_prev
        if prev is not head and prev.va_end == va.va_start:
            if merged:
                unlink_va__(va, root, augment)
            prev.va_end = va.va_end
            va = prev
            merged = True
    if not merged:
        link_va__(va, root, parent, left, augment)
    return va


def merge_or_add_vmap_area(va: vmap_area, root: vmap_tree) -> vmap_area | None:
    return merge_or_add_vmap_area__(va, root, False)


def merge_or_add_vmap_area_augment(va: vmap_area, root: vmap_tree) -> vmap_area | None:
    res = merge_or_add_vmap_area__(va, root, True)
    if res is not None:
        augment_tree_propagate_from(res)
    return res


# --- the search -----------------------------------------------------------------------
def is_within_this_va(va: vmap_area, size: int, align: int, vstart: int) -> bool:
    """Whether ``size`` bytes aligned to ``align`` fit in ``va`` at or above ``vstart``,
    with the kernel's unsigned wrap-around of ALIGN() and of the end."""
    s = va.va_start
    nva = ((s if s > vstart else vstart) + align - 1) & (ULONG_MAX ^ (align - 1))
    # nva + size past ULONG_MAX (the kernel's overflow test) is past va_end as well
    return nva >= vstart and nva + size <= va.va_end


def find_vmap_lowest_match(root: vmap_tree, size: int, align: int, vstart: int,
                           adjust_search_size: bool) -> vmap_area | None:
    """The lowest free area that the 6.1 walk finds for ``size``/``align`` at or above
    ``vstart`` (None if none): descend left while the left subtree may hold a block of
    ``length`` bytes (size + align - 1 when ``adjust_search_size``) and vstart is below
    the node, try the node, go right, else climb and resume in the right subtree of the
    first ancestor that may hold one, with vstart moved past that ancestor.

    Adds one visit per node read, climbs included.
    """
    node = root.root.rb_node
    length = size + align - 1 if adjust_search_size else size
    mask = align - 1
    amask = ULONG_MAX ^ mask
    visits = 0
    while node is not None:
        visits += 1
        s = node.va_start
        c = node.rb_left
        if c is not None and c.subtree_max_size >= length and vstart < s:
            node = c
            continue
        nva = ((s if s > vstart else vstart) + mask) & amask
        if nva >= vstart and nva + size <= node.va_end:
            root.visits += visits
            return node
        c = node.rb_right
        if c is not None and c.subtree_max_size >= length:
            node = c
            continue
        # backtrack: the first ancestor that fits, or whose right subtree may
        node = node.rb_parent
        while node is not None:
            visits += 1
            s = node.va_start
            nva = ((s if s > vstart else vstart) + mask) & amask
            if nva >= vstart and nva + size <= node.va_end:
                root.visits += visits
                return node
            c = node.rb_right
            if c is not None and c.subtree_max_size >= length and vstart <= s:
                vstart = s + 1  # do not enter the subtree just searched again
                node = c
                break
            node = node.rb_parent
    root.visits += visits
    return None


def find_vmap_lowest_linear_match(root: vmap_tree, size: int, align: int, vstart: int
                                  ) -> vmap_area | None:
    """The DEBUG_AUGMENT_LOWEST_MATCH_CHECK reference: the first area of the list that
    fits (a visit per entry read)."""
    head = root.head
    va = head.list_next
    visits = 0
    while va is not head:
        visits += 1
        if is_within_this_va(va, size, align, vstart):
            root.visits += visits
            return va
        va = va.list_next
    root.visits += visits
    return None


class fit_type(IntEnum):
    NOTHING_FIT = 0
    FL_FIT_TYPE = 1  # full fit
    LE_FIT_TYPE = 2  # left edge fit
    RE_FIT_TYPE = 3  # right edge fit
    NE_FIT_TYPE = 4  # no edge fit


NOTHING_FIT = fit_type.NOTHING_FIT
FL_FIT_TYPE = fit_type.FL_FIT_TYPE
LE_FIT_TYPE = fit_type.LE_FIT_TYPE
RE_FIT_TYPE = fit_type.RE_FIT_TYPE
NE_FIT_TYPE = fit_type.NE_FIT_TYPE


def classify_va_fit_type(va: vmap_area, nva_start_addr: int, size: int) -> fit_type:
    nva_end = nva_start_addr + size
    if nva_start_addr < va.va_start or nva_end > va.va_end:
        return NOTHING_FIT
    if va.va_start == nva_start_addr:
        return FL_FIT_TYPE if va.va_end == nva_end else LE_FIT_TYPE
    if va.va_end == nva_end:
        return RE_FIT_TYPE
    return NE_FIT_TYPE


#: What an NE split may take its new node from (see adjust_va_to_fit_type).
Spare: TypeAlias = "vmap_area | Callable[[], vmap_area | None] | None"


def adjust_va_to_fit_type(root: vmap_tree, va: vmap_area, nva_start_addr: int, size: int,
                          spare: Spare = None) -> int:
    """Carve ``[nva_start_addr, +size)`` out of the free area ``va``; 0, or -1 on failure.

    FL unlinks ``va``; LE moves its start up; RE moves its end down; NE keeps ``va`` as
    the RIGHT remainder and links a new node for the LEFT one, inserted from ``va``. The
    new node is ``spare`` when that is a vmap_area (this CPU's ne_fit_preload_node), the
    result of calling it when it is a callable (None = the GFP_NOWAIT allocation failed:
    -1, nothing changed), a fresh vmap_area when None. ``root.last_fit`` gets the type
    applied (NOTHING_FIT on failure), so NE_FIT_TYPE there means a spare was consumed.
    """
    start = va.va_start
    end = va.va_end
    nva_end = nva_start_addr + size
    if nva_start_addr < start or nva_end > end:
        root.last_fit = NOTHING_FIT
        return -1
    if start == nva_start_addr:
        if end == nva_end:
            unlink_va__(va, root, True)
            root.last_fit = FL_FIT_TYPE
            return 0
        va.va_start = nva_end
        root.last_fit = LE_FIT_TYPE
        augment_tree_propagate_from(va)
        return 0
    if end == nva_end:
        va.va_end = nva_start_addr
        root.last_fit = RE_FIT_TYPE
        augment_tree_propagate_from(va)
        return 0
    if spare is None:
        lva: vmap_area | None = vmap_area()
    elif isinstance(spare, vmap_area):
        lva = spare
    else:
        lva = spare()
        if lva is None:
            root.last_fit = NOTHING_FIT
            return -1
    assert lva is not None
    lva.va_start = start
    lva.va_end = nva_start_addr
    va.va_start = nva_end
    augment_tree_propagate_from(va)
    insert_vmap_area_augment(lva, va, root)
    root.last_fit = NE_FIT_TYPE
    return 0


def alloc_vmap_area__(root: vmap_tree, size: int, align: int, vstart: int, vend: int,
                      spare: Spare = None) -> int:
    """6.1's ``__alloc_vmap_area``: the start of ``size`` bytes aligned to ``align`` in
    ``[vstart, vend)`` carved from the free tree, or ``vend`` on failure. The walk
    adjusts its search length for alignment unless align <= PAGE_SIZE or the range is
    exactly ``size`` long. No second block is tried when the lowest one ends past vend.
    ``spare`` as for :func:`adjust_va_to_fit_type`; see ``root.last_fit``.
    """
    root.last_fit = NOTHING_FIT
    adjust_search_size = not (align <= PAGE_SIZE or ((vend - vstart) & ULONG_MAX) == size)
    va = find_vmap_lowest_match(root, size, align, vstart, adjust_search_size)
    if va is None:
        return vend
    s = va.va_start
    nva = ((s if s > vstart else vstart) + align - 1) & (ULONG_MAX ^ (align - 1))
    if nva + size > vend:
        return vend
    if adjust_va_to_fit_type(root, va, nva, size, spare):
        root.warnings.append(f"__alloc_vmap_area: adjust_va_to_fit_type failed at {nva:#x}")
        return vend
    return nva


def vmap_init_free_space(root: vmap_tree, busy: vmap_tree | Iterable[tuple[int, int]] = ()) -> None:
    """Fill the free tree ``root`` with [1, ULONG_MAX) minus the ``busy`` ranges (a busy
    tree, or address-sorted ``(va_start, va_end)`` pairs), one insert_vmap_area_augment
    per gap in ascending address order, the last one ending at ULONG_MAX."""
    ranges: Iterable[tuple[int, int]]
    if isinstance(busy, vmap_tree):
        ranges = [(va.va_start, va.va_end) for va in busy]
    else:
        ranges = busy
    vmap_start = 1
    for b_start, b_end in ranges:
        if (b_start - vmap_start) & ULONG_MAX:  # the kernel's unsigned "> 0"
            insert_vmap_area_augment(vmap_area(vmap_start, b_start), None, root)
        vmap_start = b_end
    if (ULONG_MAX - vmap_start) & ULONG_MAX:
        insert_vmap_area_augment(vmap_area(vmap_start, ULONG_MAX), None, root)


# --- lookups --------------------------------------------------------------------------
def find_vmap_area__(addr: int, root: vmap_tree) -> vmap_area | None:
    """``__find_vmap_area``: the area with va_start <= addr < va_end, or None."""
    n = root.root.rb_node
    visits = 0
    while n is not None:
        visits += 1
        if addr < n.va_start:
            n = n.rb_left
        elif addr >= n.va_end:
            n = n.rb_right
        else:
            break
    root.visits += visits
    return n


def find_vmap_area_exceed_addr(addr: int, root: vmap_tree) -> vmap_area | None:
    """The first area with addr < va_end, or None (6.1 reads vmap_area_root; any tree here)."""
    n = root.root.rb_node
    va = None
    visits = 0
    while n is not None:
        visits += 1
        if n.va_end > addr:
            va = n
            if n.va_start <= addr:
                break
            n = n.rb_left
        else:
            n = n.rb_right
    root.visits += visits
    return va


def pvm_find_va_enclose_addr(addr: int, root: vmap_tree) -> vmap_area | None:
    """The free area with va_start <= addr <= va_end (end inclusive, as 6.1), else the
    last one below addr reached by the descent, else None (6.1 reads the free tree)."""
    n = root.root.rb_node
    va = None
    visits = 0
    while n is not None:
        visits += 1
        if n.va_start <= addr:
            va = n
            if n.va_end >= addr:
                break
            n = n.rb_right
        else:
            n = n.rb_left
    root.visits += visits
    return va


def pvm_determine_end_from_reverse(va: vmap_area | None, align: int, root: vmap_tree,
                                   vmalloc_end: int) -> tuple[int, vmap_area | None]:
    """From ``va`` down the free list, the first area with room below its aligned end:
    returns ``(min(va_end & ~(align-1), vmalloc_end & ~(align-1)), that area)``, or
    ``(0, None)`` when no area qualifies. The kernel's in/out ``**va`` is the second
    value (6.1 leaves it pointing at the list head there; None here). ``vmalloc_end``
    is VMALLOC_END, a global in the kernel."""
    amask = ULONG_MAX ^ (align - 1)
    end = vmalloc_end & amask
    if va is None:
        return 0, None
    head = root.head
    visits = 0
    while va is not head:
        visits += 1
        addr = va.va_end & amask
        if addr > end:
            addr = end
        if va.va_start < addr:
            root.visits += visits
            return addr, va
        va = va.list_prev
    root.visits += visits
    return 0, None


# --- checkers -------------------------------------------------------------------------
def _key(va: vmap_area) -> int:
    return va.va_start


def check_rbtree(root: vmap_tree) -> None:
    """Red-black validity, parent links and strict va_start order (rb_check)."""
    n = rb_check(root.root, _key)
    if n != root.nr:
        raise AssertionError(f"kva: the rbtree holds {n} areas, the count says {root.nr}")


def check_list(root: vmap_tree) -> None:
    """The list, followed forwards with its back links, is the in-order traversal."""
    head = root.head
    prev = head
    va = head.list_next
    for node in rb_iter(root.root):
        if va is head:
            raise AssertionError(f"kva: list ends before the tree's {node!r}")
        if va is not node:
            raise AssertionError(f"kva: list has {va!r} where the tree has {node!r}")
        if va.list_prev is not prev:
            raise AssertionError(f"kva: back link of {va!r} does not point at {prev!r}")
        prev = va
        va = va.list_next
    if va is not head:
        raise AssertionError(f"kva: list has {va!r} beyond the tree's last node")
    if head.list_prev is not prev:
        raise AssertionError("kva: the list head's back link is not the last area")


def check_augment(root: vmap_tree) -> None:
    """subtree_max_size is the true subtree maximum at every node."""
    for va in rb_iter(root.root):
        if va.subtree_max_size != compute_subtree_max_size(va):
            raise AssertionError(f"kva: {va!r} subtree_max_size {va.subtree_max_size:#x} != "
                                 f"{compute_subtree_max_size(va):#x}")


def check_no_overlap(root: vmap_tree) -> None:
    """Every area is non-empty and ends at or before the next one starts."""
    prev: vmap_area | None = None
    for va in root:
        if va.va_start >= va.va_end:
            raise AssertionError(f"kva: empty or inverted area {va!r}")
        if prev is not None and prev.va_end > va.va_start:
            raise AssertionError(f"kva: {prev!r} overlaps {va!r}")
        prev = va


def check_merged(root: vmap_tree) -> None:
    """No two areas touch (a free or purge tree coalesces them)."""
    prev: vmap_area | None = None
    for va in root:
        if prev is not None and prev.va_end == va.va_start:
            raise AssertionError(f"kva: adjacent areas {prev!r} and {va!r} were not merged")
        prev = va


def check_count(root: vmap_tree) -> None:
    """``nr`` is the number of areas on the list."""
    n = sum(1 for _ in root)
    if n != root.nr:
        raise AssertionError(f"kva: the list holds {n} areas, the count says {root.nr}")


def check_tree(root: vmap_tree) -> None:
    """The invariants of any vmap_area tree (busy tree, purge tree before merging)."""
    check_count(root)
    check_rbtree(root)
    check_list(root)
    check_no_overlap(root)


def check_free_tree(root: vmap_tree) -> None:
    """check_tree, plus exact subtree_max_size and no unmerged neighbours."""
    check_tree(root)
    check_augment(root)
    check_merged(root)
