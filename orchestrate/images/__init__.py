"""The vrlab VM image: its cache (orchestrate.images.cache) and its build
(orchestrate.images.build). Booting one without a lab is the QEMU backend's
(`orchestrate.backends.qemu.boot_standalone`).

Everything callers use is re-exported here, so `from orchestrate.images import ensure_image`
and `images.find_image(...)` keep working.
"""

from orchestrate.images.build import (
    AUTO_KEEP_IMAGES,
    Progress,
    build_image,
    ensure_base,
    ensure_image,
    is_pvh_elf,
)
from orchestrate.images.cache import (
    APPLIANCE_DIR,
    BASE_MANIFEST,
    BASE_PREFIX,
    BUILD_FORMAT,
    DIGEST_LENGTH,
    MANIFEST,
    RECIPE_DIR,
    ImageError,
    ImageInfo,
    base_digest,
    compute_digest,
    create_overlay,
    find_image,
    image_overlay,
    image_summary,
    images_dir,
    images_in_use,
    list_images,
    load_recipe,
    prune_images,
    qcow2_backing_file,
    read_image,
)

__all__ = [
    "APPLIANCE_DIR", "AUTO_KEEP_IMAGES", "BASE_MANIFEST", "BASE_PREFIX", "BUILD_FORMAT",
    "DIGEST_LENGTH", "MANIFEST", "RECIPE_DIR", "ImageError", "ImageInfo", "Progress",
    "base_digest", "build_image", "compute_digest", "create_overlay", "ensure_base",
    "ensure_image", "find_image", "image_overlay", "image_summary", "images_dir",
    "images_in_use", "is_pvh_elf", "list_images", "load_recipe", "prune_images",
    "qcow2_backing_file", "read_image",
]
