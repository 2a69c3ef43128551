"""Images in and out: reading and writing (:mod:`~microsr.io.image`), which files a path names
and how they pair (:mod:`~microsr.io.files`), and outputs written in place while a run goes
(:mod:`~microsr.io.partial`).

Every other part of microsr reads and writes through this package; it imports nothing of
microsr but :mod:`microsr.errors`.
"""

from microsr.io.files import Pair, PathLike, atomic_output, check_output, find_images, image_stem, output_lock, pair_by_name
from microsr.io.image import (
    CANONICAL_AXES,
    Image,
    RowWriter,
    aligned_levels,
    as_image,
    available_memory,
    check_finite,
    check_image_output,
    check_memory,
    check_streamable,
    fill_levels,
    in_memory,
    open_pyramid,
    open_row_writer,
    read_image,
    select_planes,
    write_image,
    write_region,
)

__all__ = [
    "CANONICAL_AXES",
    "Image",
    "Pair",
    "PathLike",
    "RowWriter",
    "aligned_levels",
    "atomic_output",
    "as_image",
    "available_memory",
    "check_finite",
    "check_image_output",
    "check_memory",
    "check_output",
    "check_streamable",
    "fill_levels",
    "find_images",
    "image_stem",
    "in_memory",
    "open_pyramid",
    "open_row_writer",
    "output_lock",
    "pair_by_name",
    "read_image",
    "select_planes",
    "write_image",
    "write_region",
]
