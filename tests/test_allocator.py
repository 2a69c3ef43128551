"""reuse_freed_memory: large blocks stay in the heap inside the block, go back to the system after."""

import ctypes
import ctypes.util

import numpy as np
import pytest

from microsr.runtime.allocator import reuse_freed_memory


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc >= 2.33: the allocator setting does not apply")
    libc.mallinfo2.restype = _Mallinfo2
    return libc


MB = 1 << 20


def test_large_blocks_come_from_the_heap_inside_and_are_released_after():
    libc = _glibc()
    outside = np.ones(200 * MB, np.uint8)  # normally served by mmap
    assert libc.mallinfo2().hblkhd >= 200 * MB
    del outside
    with reuse_freed_memory():
        before = libc.mallinfo2().hblkhd
        inside = np.ones(200 * MB, np.uint8)
        assert libc.mallinfo2().hblkhd - before < MB  # not mmapped: from the heap
        arena = libc.mallinfo2().arena
        del inside
        again = np.ones(200 * MB, np.uint8)
        assert libc.mallinfo2().arena <= arena + MB  # the freed block was reused, the heap did not grow
        del again
    # Leaving trims the heap: the 200 MB are not held after the block.
    assert libc.mallinfo2().arena < arena - 150 * MB


def test_nested_blocks_keep_the_setting_until_the_outermost_ends():
    libc = _glibc()
    with reuse_freed_memory():
        with reuse_freed_memory():
            pass
        before = libc.mallinfo2().hblkhd
        block = np.ones(100 * MB, np.uint8)
        assert libc.mallinfo2().hblkhd - before < MB
        del block
