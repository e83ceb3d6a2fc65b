"""Typed errors raised by Kensa's core.

Hierarchy (the service maps each to one HTTP status in ``service/errors.py``)::

    KensaError
    ├── DataError            a training/eval folder has no usable image, or a bad labels file
    ├── ImageError           bytes that do not decode as a supported image
    │   ├── ImageTooLargeError   more pixels, or a longer side, than allowed (bombs)
    │   ├── ImageShapeError      a side too short or an aspect too extreme to inspect
    │   └── UnsupportedImageError   an image of a format or sample type Kensa does not read
    └── BundleError          a model bundle that is missing, corrupt or of another format
"""


class KensaError(Exception):
    """Base class of every error Kensa raises on purpose."""


class DataError(KensaError):
    """A dataset folder or labels file that cannot be used."""


class ImageError(KensaError):
    """Bytes that do not decode as a supported image."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed."""


class ImageShapeError(ImageError):
    """An image whose shorter side or aspect ratio is outside the allowed geometry."""


class UnsupportedImageError(ImageError):
    """A readable image in a format (GIF, WebP...) or sample type (float, 32-bit) Kensa does
    not read."""


class BundleError(KensaError):
    """A model bundle that is missing, corrupt or incompatible."""
